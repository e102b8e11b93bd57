"""Mistral AI: Mistral-7B-Instruct v0.1/v0.2/v0.3, Mixtral, Mistral Nemo, Mistral Small 3.x."""

import json
from dataclasses import dataclass
from typing import Literal

from .base import ChatTemplate, ConversationError, call_json, json_prefix, register, tool_results_of
from .custom import CustomTemplate, Turns, jinja_head, split_reasoning
from .jinja import jinja_call, jinja_str

# Mistral's call ids are 9 alphanumerics (Nemo's and Small's templates refuse others); a call without
# such an id (LLaMA-Factory's data has none, OpenAI's are longer) gets "call" + its 1-based number in
# the conversation, in the Python renderer and the exported Jinja alike.
_CALL_ID = "call{:05d}"


def _mistral_id(value) -> bool:
    return isinstance(value, str) and len(value) == 9 and value.isalnum()


def _v3_tool(tool: dict) -> str:
    """One tools-list entry as v0.3's and Nemo's templates write it (string values unescaped)."""
    fields = (
        f'"{key}": "{value}"' if isinstance(value, str) else f'"{key}": {json.dumps(value, ensure_ascii=False)}'
        for key, value in tool["function"].items()
        if key != "return"
    )
    return '{"type": "function", "function": {' + ", ".join(fields) + "}}"


@dataclass(frozen=True)
class MistralTemplate(CustomTemplate):
    """Mistral's instruct formats with their tool calls, as the official templates write them.

    ``flavour``: ``v3`` (Mistral-7B-Instruct v0.3: spaces around every control token), ``tekken``
    (Nemo: no spaces) or ``v7`` (Small 3.x:
    [SYSTEM_PROMPT], calls as ``[TOOL_CALLS]name[CALL_ID]id[ARGS]{...}``). The tools list sits
    right before the last user message. A tool result carries the id of the call it answers (the
    call at its position); Mistral's format has no place for text or reasoning beside calls, so such
    a turn is an error rather than losing them.
    """

    flavour: Literal["v3", "tekken", "v7"] = "tekken"

    def turns(self, out: Turns, messages, *, bos, eos, system, tools, add_generation_prompt, enable_thinking):
        v3, v7 = self.flavour == "v3", self.flavour == "v7"
        out.prompt(bos)
        if v7 and system:
            out.prompt("[SYSTEM_PROMPT]" + system + "[/SYSTEM_PROMPT]")
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        system_turn = users[-1] if users and system and not v7 else None  # as mistral-common places it
        ids: list[str] = []
        numbered = 0
        for index, message in enumerate(messages):
            role = message["role"]
            if role == "user":
                content = self._content(message)
                if index == system_turn:
                    content = system + "\n\n" + content
                if tools and index == users[-1]:
                    if v7:
                        listed = "[" + ", ".join(json.dumps(t, ensure_ascii=False) for t in tools) + "]"
                        out.prompt("[AVAILABLE_TOOLS]" + listed + "[/AVAILABLE_TOOLS]")
                    else:
                        listed = "[" + ", ".join(map(_v3_tool, tools)) + "]"
                        out.prompt((" [AVAILABLE_TOOLS] " if v3 else "[AVAILABLE_TOOLS]") + listed)
                        out.prompt(" [/AVAILABLE_TOOLS]" if v3 else "[/AVAILABLE_TOOLS]")
                out.prompt(" [INST] " + content + " [/INST]" if v3 else "[INST]" + content + "[/INST]")
            elif role == "observation":
                results = tool_results_of(self._content(message))
                if len(results) > len(ids):
                    raise ConversationError(
                        f"template {self.name!r} writes each tool result with the id of its call, but the turn before "
                        f"made {len(ids)} calls for {len(results)} results"
                    )
                for call_id, result in zip(ids, results):  # a result answers the call at its position
                    if v3:
                        out.prompt(
                            ' [TOOL_RESULTS] {"call_id": "' + call_id + '", "content": ' + result + "} [/TOOL_RESULTS] "
                        )
                    elif v7:
                        out.prompt("[TOOL_RESULTS]" + call_id + "[TOOL_CONTENT]" + result + "[/TOOL_RESULTS]")
                    else:
                        out.prompt(
                            '[TOOL_RESULTS]{"content": ' + result + ', "call_id": "' + call_id + '"}[/TOOL_RESULTS]'
                        )
            elif role == "assistant":
                out.response((" " + self._content(message) + " " if v3 else self._content(message)) + eos)
            else:
                reasoning, text, calls = split_reasoning(message)
                if reasoning or text.strip():
                    raise ConversationError(
                        f"template {self.name!r} cannot write text or reasoning beside tool calls (Mistral's format "
                        "has no place for them); put the text in a turn of its own"
                    )
                ids = []
                for call in calls:
                    numbered += 1
                    ids.append(call["id"] if _mistral_id(call.get("id")) else _CALL_ID.format(numbered))
                args = [self.arguments_text(c) for c in calls]
                names = [json.dumps(c["name"], ensure_ascii=False) for c in calls]
                if v7:
                    written = "".join(
                        f"[TOOL_CALLS]{c['name']}[CALL_ID]{i}[ARGS]{a}" for c, i, a in zip(calls, ids, args)
                    )
                elif v3:
                    items = (f'{{"name": {n}, "arguments": {a}, "id": "{i}"}}' for n, a, i in zip(names, args, ids))
                    written = " [TOOL_CALLS] [" + ", ".join(items) + "] "
                else:
                    items = (f'{{"name": {n}, "arguments": {a}, "id": "{i}"}}' for n, a, i in zip(names, args, ids))
                    written = "[TOOL_CALLS][" + ", ".join(items) + "]"
                out.response(written + eos)

    def parse_calls(self, text, tools=None):
        """``[TOOL_CALLS]`` then a JSON list of ``{"name", "arguments", "id"}`` (v0.3, Nemo), or, per call,
        ``[TOOL_CALLS]name[CALL_ID]id[ARGS]{...}`` (v7: Small 3.x)."""
        head, marker, rest = text.partition("[TOOL_CALLS]")
        if not marker:
            return text, []
        value, tail = json_prefix(rest)
        if isinstance(value, list):
            calls = [call_json(item) for item in value]
            return (head.strip(), calls) if calls and None not in calls and not tail.strip() else (text, [])
        calls = []
        for part in rest.split("[TOOL_CALLS]"):
            name, _, args = part.partition("[ARGS]")
            name, _, call_id = name.partition("[CALL_ID]")
            arguments, tail = json_prefix(args)
            if not name.strip() or not isinstance(arguments, (dict, str)) or tail.strip():
                return text, []
            calls.append({"name": name.strip(), "arguments": arguments, **({"id": call_id} if call_id else {})})
        return head.strip(), calls

    def jinja(self, default_system: str) -> str:
        v3, v7 = self.flavour == "v3", self.flavour == "v7"
        s = jinja_str
        tool_entry = (
            "{%- set entry = tool if tool['function'] is defined else {'type': 'function', 'function': tool} -%}"
        )
        if v7:
            tools_list = (
                "{%- set t = namespace(text='') -%}{%- for tool in tools -%}" + tool_entry + "{%- set t.text = "
                "t.text + (', ' if not loop.first else '') + (entry | tojson) -%}{%- endfor -%}"
                "{{- '[AVAILABLE_TOOLS][' + t.text + '][/AVAILABLE_TOOLS]' -}}"
            )
        else:
            tools_list = (
                f"{{{{- {s(' [AVAILABLE_TOOLS] [' if v3 else '[AVAILABLE_TOOLS][')} -}}}}"
                "{%- for tool in tools -%}" + tool_entry + "{%- set fn = entry['function'] -%}"
                '{{- \'{"type": "function", "function": {\' -}}'
                "{%- for key, val in fn | items if key != 'return' -%}"
                "{%- if val is string -%}{{- '\"' + key + '\": \"' + val + '\"' -}}"
                "{%- else -%}{{- '\"' + key + '\": ' + val | tojson -}}{%- endif -%}"
                "{%- if not loop.last -%}{{- ', ' -}}{%- endif -%}{%- endfor -%}"
                "{{- '}}' -}}{%- if not loop.last -%}{{- ', ' -}}{%- endif -%}{%- endfor -%}"
                f"{{{{- {s('] [/AVAILABLE_TOOLS]' if v3 else '][/AVAILABLE_TOOLS]')} -}}}}"
            )
        system_turn = "-1" if v7 else "ns.last_query"
        inst = "' [INST] ' + content + ' [/INST]'" if v3 else "'[INST]' + content + '[/INST]'"
        if v7:
            result = "'[TOOL_RESULTS]' + id + '[TOOL_CONTENT]' + message['content'] + '[/TOOL_RESULTS]'"
            call = "'[TOOL_CALLS]' + call['name'] + '[CALL_ID]' + id + '[ARGS]' + args"
            calls_open, calls_close = "''", "''"
        else:
            call = "'{\"name\": ' + (call['name'] | tojson) + ', \"arguments\": ' + args + ', \"id\": \"' + id + '\"}'"
            if v3:
                result = "' [TOOL_RESULTS] {\"call_id\": \"' + id + '\", \"content\": ' + message['content'] + '} [/TOOL_RESULTS] '"
                calls_open, calls_close = "' [TOOL_CALLS] ['", "'] '"
            else:
                result = "'[TOOL_RESULTS]{\"content\": ' + message['content'] + ', \"call_id\": \"' + id + '\"}[/TOOL_RESULTS]'"
                calls_open, calls_close = "'[TOOL_CALLS]['", "']'"
        answer = "' ' + message['content'] + ' ' + eos" if v3 else "message['content'] + eos"
        return (
            jinja_head(default_system) + "{%- set ids = namespace(n=0, last='', list=[], r=0) -%}"
            "{{- bos -}}"
            + ("{%- if system -%}{{- '[SYSTEM_PROMPT]' + system + '[/SYSTEM_PROMPT]' -}}{%- endif -%}" if v7 else "")
            + "{%- for message in loop_messages -%}"
            "{%- if message['role'] == 'user' -%}"
            "{%- set content = message['content'] -%}"
            f"{{%- if system and loop.index0 == {system_turn} -%}}{{%- set content = system + '\\n\\n' + content -%}}"
            "{%- endif -%}"
            "{%- if tools and loop.index0 == ns.last_query -%}" + tools_list + "{%- endif -%}"
            f"{{{{- {inst} -}}}}"
            "{%- elif message['role'] in ['tool', 'observation'] -%}"
            "{%- set given = message['tool_call_id'] if message['tool_call_id'] is string else '' -%}"
            "{%- set id = given if given | length == 9 and given.isalnum() else (ids.list[ids.r] if ids.r < ids.list "
            "| length else ids.last) -%}{%- set ids.r = ids.r + 1 -%}"
            f"{{{{- {result} -}}}}"
            "{%- elif message['tool_calls'] is defined and message['tool_calls'] -%}"
            f"{{{{- {calls_open} -}}}}"
            "{%- set ids.list = [] -%}{%- set ids.r = 0 -%}"
            "{%- for tool_call in message['tool_calls'] -%}" + jinja_call(self) + "{%- set ids.n = ids.n + 1 -%}"
            "{%- set given = tool_call['id'] if tool_call['id'] is string else '' -%}"
            f"{{%- set id = given if given | length == 9 and given.isalnum() else {s(_CALL_ID.split('{')[0])} + "
            "('%05d' | format(ids.n)) -%}{%- set ids.last = id -%}{%- set ids.list = ids.list + [id] -%}"
            f"{{{{- ({s(', ')} if not loop.first and {str(not v7).lower()} else '') + {call} -}}}}"
            "{%- endfor -%}"
            f"{{{{- {calls_close} + eos -}}}}"
            f"{{%- else -%}}{{{{- {answer} -}}}}"
            "{%- endif -%}{%- endfor -%}"
        )


register(
    ChatTemplate(
        name="mistral",
        prefix="{bos}",
        user="[INST] {content} [/INST]",
        system_in_first_user="{system}\n\n{content}",
        notes=(
            "Mistral-7B-Instruct v0.1/v0.2 and Mixtral. Their official template rejects system messages; "
            "ffc puts a system prompt at the start of the first [INST] block."
        ),
    ),
    MistralTemplate(
        name="mistral_v3",
        tool_result_separator=None,  # each result in its own block (turns() splits them)
        flavour="v3",
        tool_definitions=True,
        notes=(
            "Mistral-7B-Instruct v0.3 (LLaMA-Factory's `mistral`; ffc's `mistral` keeps v0.1/v0.2's spacing), with "
            "[AVAILABLE_TOOLS] before the last user message, [TOOL_CALLS] with call ids and [TOOL_RESULTS]. Its "
            "official template silently drops a system message; ffc opens the last [INST] block with it, where "
            "mistral-common (Mistral's own tokenizer library) and Nemo's template put it."
        ),
    ),
    MistralTemplate(
        name="ministral",
        tool_result_separator=None,  # each result in its own block (turns() splits them)
        flavour="tekken",
        tool_definitions=True,
        notes=(
            "Mistral Nemo (2407) and Ministral-8B (2410), tokenizer v3 tekken, with [AVAILABLE_TOOLS], [TOOL_CALLS] "
            "and [TOOL_RESULTS] carrying 9-character call ids. A system prompt opens the last [INST] block, where "
            "the official template puts it at generation (LLaMA-Factory's `ministral` puts it into the first), so "
            "earlier turns of a multi-turn sample are trained without it; the official template drops it from a "
            "conversation that ends with a response, ffc keeps it."
        ),
    ),
    MistralTemplate(
        name="mistral_small",
        tool_result_separator=None,  # each result in its own block (turns() splits them)
        flavour="v7",
        tool_definitions=True,
        notes=(
            "Mistral Small 3 (2501) and 3.1/3.2 (2503, 2506), tokenizer v7 tekken; tool calls as 3.1/3.2 write them "
            "([TOOL_CALLS]name[CALL_ID]id[ARGS]{...}, [TOOL_RESULTS]id[TOOL_CONTENT]...). 3.1/3.2's template adds a "
            "long default system prompt holding the current date when none is given; ffc adds none (a date would "
            "make the training text depend on the day it was built)."
        ),
    ),
)
