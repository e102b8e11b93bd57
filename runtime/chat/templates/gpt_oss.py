"""gpt-oss (OpenAI): the harmony format, with channels analysis / commentary / final."""

import json
import re
from dataclasses import dataclass
from typing import Literal

from .base import ConversationError, json_prefix, register
from .custom import CustomTemplate, Turns, jinja_head, split_reasoning
from .jinja import jinja_call, jinja_str

START, END, RETURN, CALL = "<|start|>", "<|end|>", "<|return|>", "<|call|>"
CHANNELS = "# Valid channels: analysis, commentary, final. Channel must be included for every message."
TOOL_CHANNEL = "\nCalls to these tools must go to the commentary channel: 'functions'."


def typescript(spec: dict) -> str:
    """A JSON-schema type as the official template writes it (its odd spacing included)."""
    kind = spec.get("type")
    null = " | null" if spec.get("nullable") else ""
    if kind == "array":
        items = spec.get("items")
        if not items:
            return "any[]" + null
        simple = {"string": "string[]", "number": "number[]", "integer": "number[]", "boolean": "boolean[]"}
        if items.get("type") in simple:
            return simple[items["type"]] + null
        inner = typescript(items)
        return ("any[]" if inner == "object | object" or len(inner) > 50 else inner + "[]") + null
    if isinstance(kind, list) and kind:
        return " | ".join(map(str, kind))
    if spec.get("oneOf"):
        parts = []
        for variant in spec["oneOf"]:
            part = typescript(variant) + ("// " + variant["description"] if variant.get("description") else "")
            if "default" in variant:
                part += " " * 20 + "// default: " + json.dumps(variant["default"], ensure_ascii=False)
            parts.append(part)
        return " | \n".join(parts)
    if kind == "string":
        if spec.get("enum"):
            return '"' + '" | "'.join(map(str, spec["enum"])) + '"'
        return "string" + null
    if kind in ("number", "integer"):
        return "number"
    if kind == "boolean":
        return "boolean"
    if kind == "object":
        if not spec.get("properties"):
            return "object"
        required = spec.get("required") or []
        props = [
            name + ("" if name in required else "?") + ": \n" + " " * 16 + typescript(sub)
            for name, sub in spec["properties"].items()
        ]
        return "{\n" + ", ".join(props) + "}"
    return "any"


def namespace(tools: list[dict]) -> str:
    out = "## functions\n\nnamespace functions {\n\n"
    for tool in tools:
        tool = tool["function"]
        out += "// " + tool.get("description", "") + "\ntype " + tool["name"] + " = "
        params = tool.get("parameters") or {}
        if not params.get("properties"):
            out += "() => any;\n\n"
            continue
        out += "(_: {\n"
        required = params.get("required") or []
        for name, spec in params["properties"].items():
            out += "// " + spec["description"] + "\n" if spec.get("description") else ""
            out += name + ("" if name in required else "?") + ": " + typescript(spec)
            if "default" in spec:
                if spec.get("enum"):
                    out += ", // default: " + str(spec["default"])
                elif spec.get("oneOf"):
                    out += "// default: " + str(spec["default"])
                else:
                    out += ", // default: " + json.dumps(spec["default"], ensure_ascii=False)
            out += ",\n"
        out += "}) => any;\n\n"
    return out + "} // namespace functions"


@dataclass(frozen=True)
class HarmonyTemplate(CustomTemplate):
    """gpt-oss's harmony format: a system header, the system prompt as the developer message.

    A response is ``<|channel|>final<|message|>...`` after the ``<|start|>assistant`` prompt; only
    the conversation's last response keeps its reasoning (an ``analysis`` message before it) and
    ends with ``<|return|>``, earlier ones end with ``<|end|>``, as the official template renders
    for training. A call is an assistant message ``to=functions.<name>`` on the commentary
    channel ending ``<|call|>``, preceded by its reasoning (or text) unless a final answer follows
    later; tool result i answers call i of the turn before it, its text JSON-quoted.
    """

    model_identity: str = "You are ChatGPT, a large language model trained by OpenAI."
    reasoning_effort: str = "medium"
    current_date: str = "2025-01-15"  # fixed, so training text does not change from day to day
    reasoning_turns: Literal["official", "all"] = "official"  # "all": every response keeps its reasoning

    def turns(self, out: Turns, messages, *, bos, eos, system, tools, add_generation_prompt, enable_thinking):
        header = f"{self.model_identity}\nKnowledge cutoff: 2024-06\nCurrent date: {self.current_date}\n\n"
        header += f"Reasoning: {self.reasoning_effort}\n\n" + CHANNELS + (TOOL_CHANNEL if tools else "")
        out.prompt(START + "system<|message|>" + header + END)
        if system or tools:
            developer = ("# Instructions\n\n" + system + "\n\n" if system else "") + (
                "# Tools\n\n" + namespace(tools) if tools else ""
            )
            out.prompt(START + "developer<|message|>" + developer + END)
        last_calls: list[str] = []  # the names of the last turn's calls; result i answers call i
        for index, message in enumerate(messages):
            if message["role"] == "user":
                out.prompt(START + "user<|message|>" + self._content(message) + END)
                continue
            if message["role"] == "observation":
                if not last_calls:
                    raise ConversationError("a tool result needs an assistant tool call before it")
                for i, result in enumerate(message.get("results") or [self._content(message)]):
                    name, text = last_calls[min(i, len(last_calls) - 1)], json.dumps(result, ensure_ascii=False)
                    out.prompt(f"{START}functions.{name} to=assistant<|channel|>commentary<|message|>{text}{END}")
                continue
            reasoning, text, calls = split_reasoning(message)
            reasoning = "" if enable_thinking is False else reasoning
            out.prompt(START + "assistant")
            if calls:
                if text and reasoning:
                    raise ConversationError("gpt-oss cannot render both text and reasoning beside a tool call")
                later = any(m["role"] == "assistant" for m in messages[index + 1 :])
                final_later = later and self.reasoning_turns != "all"
                analysis = reasoning or text
                body = (
                    f"<|channel|>analysis<|message|>{analysis}{END}{START}assistant"
                    if analysis and not final_later
                    else ""
                )
                body += f"{START}assistant".join(
                    f" to=functions.{c['name']}<|channel|>commentary json<|message|>{self.arguments_text(c)}{CALL}"
                    for c in calls
                )
                last_calls = [c["name"] for c in calls]
                out.response(body)
            else:
                ending = RETURN if index == len(messages) - 1 and not add_generation_prompt else END
                keep = reasoning and (ending == RETURN or self.reasoning_turns == "all")
                analysis = f"<|channel|>analysis<|message|>{reasoning}{END}{START}assistant" if keep else ""
                out.response(analysis + "<|channel|>final<|message|>" + text + ending)
                last_calls = [] if ending == END else last_calls
        if add_generation_prompt:
            out.prompt(START + "assistant")

    def parse_calls(self, text, tools=None):
        """`` to=functions.NAME<|channel|>commentary json<|message|>{...}``: harmony ends the turn at each call
        (<|call|> is a stop string), so an answer holds one; reasoning before it is in the analysis channel."""
        match = re.search(r"to=functions\.([^\s<]+)\s*<\|channel\|>commentary[^<]*<\|message\|>", text)
        if not match:
            return text, []
        arguments, rest = json_prefix(text[match.end() :])
        if arguments is None or rest.strip():
            return text, []
        return text[: match.start()].strip(), [{"name": match.group(1), "arguments": arguments}]

    def jinja(self, default_system: str) -> str:
        return jinja_head(default_system) + _JINJA.replace("MODEL_IDENTITY", jinja_str(self.model_identity)).replace(
            "REASONING_EFFORT", jinja_str(self.reasoning_effort)
        ).replace("CURRENT_DATE", jinja_str(self.current_date)).replace(
            "KEEP_ALL", "true" if self.reasoning_turns == "all" else "false"
        ).replace("JINJA_CALL", jinja_call(self))


# The Jinja twin of typescript() and namespace(); whitespace is spelled out, never left to the layout.
_JINJA = (
    "{%- macro ts(spec) -%}"
    "{%- set null = ' | null' if spec['nullable'] else '' -%}"
    "{%- if spec['type'] == 'array' -%}"
    "{%- if spec['items'] -%}"
    "{%- set simple = {'string': 'string[]', 'number': 'number[]', 'integer': 'number[]', 'boolean': 'boolean[]'} -%}"
    "{%- if spec['items']['type'] is string and spec['items']['type'] in simple -%}"
    "{{- simple[spec['items']['type']] + null -}}"
    "{%- else -%}{%- set inner = ts(spec['items']) -%}"
    "{{- ('any[]' if inner == 'object | object' or inner | length > 50 else inner + '[]') + null -}}{%- endif -%}"
    "{%- else -%}{{- 'any[]' + null -}}{%- endif -%}"
    "{%- elif spec['type'] is defined and spec['type'] is iterable and spec['type'] is not string "
    "and spec['type'] is not mapping and spec['type'][0] is defined -%}{{- spec['type'] | join(' | ') -}}"
    "{%- elif spec['oneOf'] -%}"
    "{%- for variant in spec['oneOf'] -%}"
    "{{- ts(variant) -}}{%- if variant['description'] -%}{{- '// ' + variant['description'] -}}{%- endif -%}"
    "{%- if variant['default'] is defined -%}{{- '                    // default: ' + (variant['default'] | tojson) -}}"
    "{%- endif -%}{%- if not loop.last -%}{{- ' | \\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- elif spec['type'] == 'string' -%}"
    "{%- if spec['enum'] -%}{{- '\"' + spec['enum'] | join('\" | \"') + '\"' -}}{%- else -%}{{- 'string' + null -}}"
    "{%- endif -%}"
    "{%- elif spec['type'] in ['number', 'integer'] -%}{{- 'number' -}}"
    "{%- elif spec['type'] == 'boolean' -%}{{- 'boolean' -}}"
    "{%- elif spec['type'] == 'object' -%}"
    "{%- if spec['properties'] -%}{{- '{\\n' -}}"
    "{%- for name, sub in spec['properties'].items() -%}"
    "{{- name + ('' if name in (spec['required'] or []) else '?') + ': \\n                ' + ts(sub) -}}"
    "{%- if not loop.last -%}{{- ', ' -}}{%- endif -%}"
    "{%- endfor -%}{{- '}' -}}"
    "{%- else -%}{{- 'object' -}}{%- endif -%}"
    "{%- else -%}{{- 'any' -}}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- set acc = namespace(tools=[]) -%}{%- for tool in (tools or []) -%}"
    "{%- set acc.tools = acc.tools + [tool['function'] if tool['function'] is defined else tool] -%}{%- endfor -%}"
    "{%- set tool_list = acc.tools -%}"
    "{%- set identity = model_identity if model_identity is defined else MODEL_IDENTITY -%}"
    "{%- set effort = reasoning_effort if reasoning_effort is defined else REASONING_EFFORT -%}"
    "{%- set today = date_string if date_string is defined else CURRENT_DATE -%}"
    "{{- '<|start|>system<|message|>' + identity + '\\nKnowledge cutoff: 2024-06\\nCurrent date: ' + today + "
    "'\\n\\nReasoning: ' + effort + '\\n\\n' + " + jinja_str(CHANNELS) + " -}}"
    "{%- if tool_list -%}{{- " + jinja_str(TOOL_CHANNEL) + " -}}{%- endif -%}{{- '<|end|>' -}}"
    "{%- if system or tool_list -%}{{- '<|start|>developer<|message|>' -}}"
    "{%- if system -%}{{- '# Instructions\\n\\n' + system + '\\n\\n' -}}{%- endif -%}"
    "{%- if tool_list -%}{{- '# Tools\\n\\n## functions\\n\\nnamespace functions {\\n\\n' -}}"
    "{%- for tool in tool_list -%}"
    "{{- '// ' + (tool['description'] or '') + '\\ntype ' + tool['name'] + ' = ' -}}"
    "{%- set params = tool['parameters'] or {} -%}"
    "{%- if params['properties'] -%}{{- '(_: {\\n' -}}"
    "{%- for name, spec in params['properties'].items() -%}"
    "{%- if spec['description'] -%}{{- '// ' + spec['description'] + '\\n' -}}{%- endif -%}"
    "{{- name + ('' if name in (params['required'] or []) else '?') + ': ' + ts(spec) -}}"
    "{%- if spec['default'] is defined -%}"
    "{%- if spec['enum'] -%}{{- ', // default: ' + spec['default'] | string -}}"
    "{%- elif spec['oneOf'] -%}{{- '// default: ' + spec['default'] | string -}}"
    "{%- else -%}{{- ', // default: ' + (spec['default'] | tojson) -}}{%- endif -%}"
    "{%- endif -%}{{- ',\\n' -}}"
    "{%- endfor -%}{{- '}) => any;\\n\\n' -}}"
    "{%- else -%}{{- '() => any;\\n\\n' -}}{%- endif -%}"
    "{%- endfor -%}{{- '} // namespace functions' -}}{%- endif -%}"
    "{{- '<|end|>' -}}{%- endif -%}"
    "{%- set last = namespace(calls=[], k=0) -%}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'user' -%}{{- '<|start|>user<|message|>' + message['content'] + '<|end|>' -}}"
    "{%- elif message['role'] in ['tool', 'observation'] -%}"
    "{%- if not last.calls -%}{{- raise_exception('a tool result needs an assistant tool call before it') -}}"
    "{%- endif -%}"
    "{{- '<|start|>functions.' + last.calls[[last.k, last.calls | length - 1] | min] + "
    "' to=assistant<|channel|>commentary<|message|>' + (message['content'] | tojson) + '<|end|>' -}}"
    "{%- set last.k = last.k + 1 -%}"
    "{%- else -%}"
    "{%- set text = message['content'] if message['content'] is string else '' -%}"
    "{%- set reasoning = message['reasoning_content'] if message['reasoning_content'] is string else '' -%}"
    "{%- if message['thinking'] is string and not reasoning -%}{%- set reasoning = message['thinking'] -%}{%- endif -%}"
    "{%- if '</think>' in text -%}"
    "{%- if not reasoning -%}{%- set reasoning = text.split('</think>')[0].split('<think>')[-1] -%}{%- endif -%}"
    "{%- set text = (text.split('</think>')[1:] | join('</think>')).lstrip('\\n') -%}{%- endif -%}"
    "{%- set reasoning = '' if (enable_thinking is defined and enable_thinking is false) else reasoning.strip('\\n') -%}"
    "{%- if message['tool_calls'] is defined and message['tool_calls'] -%}"
    "{%- if text and reasoning -%}"
    "{{- raise_exception('gpt-oss cannot render both text and reasoning beside a tool call') -}}{%- endif -%}"
    "{%- set later = namespace(final=false) -%}{%- for m in loop_messages[loop.index:] -%}"
    "{%- if m['role'] == 'assistant' and not (m['tool_calls'] is defined and m['tool_calls']) -%}"
    "{%- set later.final = true -%}{%- endif -%}{%- endfor -%}"
    "{%- set analysis = reasoning or text -%}"
    "{%- if analysis and not (later.final and not KEEP_ALL) -%}"
    "{{- '<|start|>assistant<|channel|>analysis<|message|>' + analysis + '<|end|>' -}}{%- endif -%}"
    "{%- set last.calls = [] -%}{%- set last.k = 0 -%}"
    "{%- for tool_call in message['tool_calls'] -%}"
    "JINJA_CALL"
    "{{- '<|start|>assistant to=functions.' + call['name'] + '<|channel|>commentary json<|message|>' + args + "
    "'<|call|>' -}}{%- set last.calls = last.calls + [call['name']] -%}"
    "{%- endfor -%}"
    "{%- else -%}"
    "{%- set ending = '<|return|>' if (loop.last and not add_generation_prompt) else '<|end|>' -%}"
    "{%- if reasoning and (ending == '<|return|>' or KEEP_ALL) -%}"
    "{{- '<|start|>assistant<|channel|>analysis<|message|>' + reasoning + '<|end|>' -}}{%- endif -%}"
    "{{- '<|start|>assistant<|channel|>final<|message|>' + text + ending -}}"
    "{%- if ending == '<|end|>' -%}{%- set last.calls = [] -%}{%- endif -%}{%- endif -%}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start|>assistant' -}}{%- endif -%}"
)

register(
    HarmonyTemplate(
        name="gpt_oss",
        tool_definitions=True,
        stop_words=(RETURN, CALL),  # as gpt-oss generates: <|end|> closes an analysis message, not the turn
        notes=(
            "gpt-oss (harmony). The system header's date is fixed (current_date, 2025-01-15) so training text is "
            "reproducible; the official template writes today's date (the exported Jinja takes date_string). Only the "
            "last response keeps its reasoning, as officially; reasoning before a call is kept unless a final answer "
            "follows. Several calls in one turn become consecutive call messages (the official template renders only "
            "the first). Tool result i answers the turn's call i, each in its own message (the official template names "
            "every result after the turn's first call). LLaMA-Factory's gpt_oss renders no system header at all."
        ),
    ),
)
