"""Llama (Meta): Llama 2, Llama 3.x, Llama 4."""

import json
from dataclasses import dataclass

from .base import ChatTemplate, call_json, json_prefix, register, tool_results_of
from .custom import CustomTemplate, Turns, jinja_head, split_reasoning
from .jinja import jinja_call, jinja_str

_LLAMA3_HEADER = "<|start_header_id|>{role}<|end_header_id|>\n\n"


def _llama3(role: str) -> str:
    return _LLAMA3_HEADER.replace("{role}", role)


def _llama4(role: str) -> str:
    return f"<|header_start|>{role}<|header_end|>\n\n"


LLAMA4_TOOLS = (
    "Given the following functions, please respond with a JSON for a function call with its proper arguments that "
    'best answers the given prompt.\n\nRespond in the format {"name": function name, "parameters": dictionary of '
    "argument name and its value}.Do not use variables.\n\n"
)


@dataclass(frozen=True)
class Llama4Template(CustomTemplate):
    """Llama 4: the tools list opens the first user message, calls follow ``<|python_start|><|python_end|>``.

    As the official template: the system prompt (trimmed) gets "Environment: ipython" when there are
    tools, a response that calls tools writes its text between ``<|python_start|>`` and
    ``<|python_end|>`` and then each call as ``{"name": ..., "parameters": ...}``, and a tool result is
    written as a JSON string.
    """

    def turns(self, out: Turns, messages, *, bos, eos, system, tools, add_generation_prompt, enable_thinking):
        out.prompt(bos)
        if system.strip():
            out.prompt(_llama4("system") + ("Environment: ipython\n" if tools else "") + system.strip() + "<|eot|>")
        if tools:
            listed = "".join(json.dumps(t, ensure_ascii=False, indent=4) + "\n\n" for t in tools)
            first = self._content(messages[0]).strip()
            out.prompt(_llama4("user") + LLAMA4_TOOLS + listed + first + "<|eot|>")
            messages = messages[1:]
        for message in messages:
            if message["role"] == "user":
                out.prompt(_llama4("user") + self._content(message) + "<|eot|>")
            elif message["role"] == "observation":
                for result in tool_results_of(self._content(message)):  # each result in a turn of its own
                    out.prompt(_llama4("ipython") + json.dumps(result, ensure_ascii=False) + "<|eot|>")
            elif message["role"] == "assistant":
                out.prompt(_llama4("assistant"))
                out.response(self._content(message) + "<|eot|>")
            else:
                reasoning, text, calls = split_reasoning(message)
                if reasoning:  # Llama 4 has no reasoning markup: kept in the text, as for plain responses
                    text = f"<think>\n{reasoning}\n</think>\n\n{text}"
                written = "".join(
                    '{"name": "' + c["name"] + '", "parameters": ' + self.arguments_text(c) + "}" for c in calls
                )
                out.prompt(_llama4("assistant"))
                out.response("<|python_start|>" + text + "<|python_end|>" + written + "<|eot|>")
        if add_generation_prompt:
            out.prompt(_llama4("assistant"))

    def parse_calls(self, text, tools=None):
        """<|python_start|>text<|python_end|> then the calls, ``{"name", "parameters"}`` one after another."""
        if "<|python_end|>" not in text:
            return text, []
        head, _, rest = text.partition("<|python_end|>")
        calls = []
        while rest.strip():
            value, rest = json_prefix(rest)
            call = call_json(value, "parameters")
            if call is None:
                return text, []
            calls.append(call)
        return head.removeprefix("<|python_start|>"), calls

    def jinja(self, default_system: str) -> str:
        system, user, assistant, ipython = (
            jinja_str(_llama4(role)) for role in ("system", "user", "assistant", "ipython")
        )
        return (
            jinja_head(default_system) + "{{- bos -}}{%- set system = system | trim -%}"
            f"{{%- if system -%}}{{{{- {system} + ('Environment: ipython\\n' if tools else '') + system + '<|eot|>' -}}}}"
            "{%- endif -%}"
            f"{{%- if tools -%}}{{{{- {user} + {jinja_str(LLAMA4_TOOLS)} -}}}}"
            "{%- for tool in tools -%}"
            "{%- set entry = tool if tool['function'] is defined else {'type': 'function', 'function': tool} -%}"
            "{{- entry | tojson(indent=4) + '\\n\\n' -}}{%- endfor -%}"
            "{{- loop_messages[0]['content'] | trim + '<|eot|>' -}}{%- set loop_messages = loop_messages[1:] -%}"
            "{%- endif -%}"
            "{%- for message in loop_messages -%}"
            f"{{%- if message['role'] == 'user' -%}}{{{{- {user} + message['content'] + '<|eot|>' -}}}}"
            "{%- elif message['role'] in ['tool', 'observation', 'ipython'] -%}"
            f"{{{{- {ipython} + (message['content'] | tojson) + '<|eot|>' -}}}}"
            "{%- elif message['tool_calls'] is defined and message['tool_calls'] -%}"
            f"{{{{- {assistant} + '<|python_start|>' + (message['content'] or '') + '<|python_end|>' -}}}}"
            "{%- for tool_call in message['tool_calls'] -%}"
            + jinja_call(self)
            + "{{- '{\"name\": \"' + call['name'] + '\", \"parameters\": ' + args + '}' -}}"
            "{%- endfor -%}{{- '<|eot|>' -}}"
            f"{{%- else -%}}{{{{- {assistant} + message['content'] + '<|eot|>' -}}}}"
            "{%- endif -%}{%- endfor -%}"
            f"{{%- if add_generation_prompt -%}}{{{{- {assistant} -}}}}{{%- endif -%}}"
        )


register(
    ChatTemplate(
        name="llama2",
        user="{bos}[INST] {content} [/INST]",
        response_lead=" ",
        assistant_end=" {eos}",
        system_in_first_user="<<SYS>>\n{system}\n<</SYS>>\n\n{content}",
        strip_messages=True,
        strip_after_merge=True,
        notes="Llama-2-chat: the system prompt sits inside the first [INST] block.",
    ),
    ChatTemplate(
        name="llama3",
        prefix="{bos}",
        system=_llama3("system") + "{content}<|eot_id|>",
        user=_llama3("user") + "{content}<|eot_id|>",
        observation=_llama3("ipython") + "{content}<|eot_id|>",
        assistant_prefix=_llama3("assistant"),
        assistant_end="<|eot_id|>",
        strip_messages=True,
        strip_system=True,
        stop_words=("<|eot_id|>", "<|eom_id|>"),
        notes=(
            "Llama-3/3.1/3.2 instruct without the date header of 3.1+. Meta's first Llama-3 template appended an "
            "empty assistant header even without a generation prompt; ffc follows the corrected template."
        ),
    ),
    Llama4Template(
        name="llama4",
        tool_result_separator=None,  # each result in its own block (turns() splits them)
        tool_definitions=True,
        assistant_end="<|eot|>",
        stop_words=("<|eot|>", "<|eom|>"),
        notes=(
            "Llama 4 instruct (Scout, Maverick). As the official template: only the system prompt is trimmed; the "
            "tools list (JSON, indented by 4) opens the first user message; a response with calls writes its text "
            'between <|python_start|> and <|python_end|>, then each call as {"name", "parameters"}; a tool '
            "result is written as a JSON string. Arguments given as JSON text are quoted through tojson, as "
            "officially."
        ),
    ),
)
