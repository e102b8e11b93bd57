"""Llama 3.1-3.3 (Meta) as their chat template renders them: ``llama3_1``.

Apart from ``llama3`` (Llama 3, no date header) because the system turn always carries the
knowledge-cutoff and date header, and tools follow Meta's format: ``Environment: ipython`` in the
system turn, the tool definitions (JSON indented by 4) opening the first user turn, one call per
turn as ``{"name": ..., "parameters": ...}``, a tool result (role ``ipython``) written as a JSON
string (the template's ``tojson`` of a string).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .base import ChatTemplate, ConversationError, call_json, jinja_arguments, json_prefix, register
from .custom import CustomTemplate, Turns, split_reasoning

EOT = "<|eot_id|>"
TOOLS_INTRO = (
    "Given the following functions, please respond with a JSON for a function call with its proper arguments "
    'that best answers the given prompt.\n\nRespond in the format {"name": function name, "parameters": '
    "dictionary of argument name and its value}.Do not use variables.\n\n"
)


def _header(role: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n"


@dataclass(frozen=True)
class Llama31Template(CustomTemplate):
    # The template's own default (3.1); 3.2/3.3 write the day of rendering, which training cannot fix.
    date_string: str = "26 Jul 2024"

    def turns(self, out: Turns, messages, *, bos, eos, system, tools, add_generation_prompt, enable_thinking):
        environment = "Environment: ipython\n" if tools else ""
        out.prompt(
            bos + _header("system") + environment + "Cutting Knowledge Date: December 2023\n"
            f"Today Date: {self.date_string}\n\n" + system.strip() + EOT
        )
        messages = list(messages)
        if tools:
            if not messages or messages[0]["role"] != "user":
                raise ConversationError("Llama 3.1 puts the tools into the first user message; there is none")
            listed = "".join(json.dumps(t, indent=4, ensure_ascii=False) + "\n\n" for t in tools)
            out.prompt(_header("user") + TOOLS_INTRO + listed + messages.pop(0)["content"].strip() + EOT)
        for message in messages:
            if message["role"] == "user":
                out.prompt(_header("user") + message["content"].strip() + EOT)
            elif message["role"] == "observation":
                out.prompt(_header("ipython") + json.dumps(message["content"], ensure_ascii=False) + EOT)
            elif message["role"] == "function":
                reasoning, text, calls = split_reasoning(message)
                if reasoning or text.strip():  # refused rather than dropped, as Mistral's templates do
                    raise ConversationError(
                        f"template {self.name!r} cannot write text or reasoning beside a tool call (Llama 3.1's "
                        "format has no place for them); put the text in a turn of its own"
                    )
                if len(calls) != 1:
                    raise ConversationError(f"Llama 3.1 makes one tool call per turn; this turn makes {len(calls)}")
                call = calls[0]
                out.prompt(_header("assistant"))
                out.response(f'{{"name": "{call["name"]}", "parameters": {self.arguments_text(call)}}}' + EOT)
            else:
                out.prompt(_header("assistant"))
                out.response(ChatTemplate._content(message).strip() + EOT)
        if add_generation_prompt:
            out.prompt(_header("assistant"))

    def parse_calls(self, text, tools=None):
        """A call is the whole answer: ``{"name", "parameters"}`` (after <|python_tag|> when the model writes it)."""
        value, rest = json_prefix(text.removeprefix("<|python_tag|>"))
        call = call_json(value, "parameters") if not rest.strip() else None
        return ("", [call]) if call else (text, [])

    def jinja(self, default_system: str) -> str:
        def say(expression: str) -> str:
            return "{{- " + expression + " -}}"

        def header(role_expression: str) -> str:
            return "'<|start_header_id|>' + " + role_expression + " + '<|end_header_id|>\\n\\n'"

        eot = " + '" + EOT + "'"
        return "".join(
            [
                say("bos_token or ''"),
                "{%- if messages and messages[0]['role'] == 'system' -%}",
                "{%- set system_message = messages[0]['content'] | trim -%}{%- set messages = messages[1:] -%}",
                "{%- else -%}{%- set system_message = "
                + json.dumps(default_system.strip(), ensure_ascii=False)
                + " -%}{%- endif -%}",
                say(header("'system'")),
                "{%- if tools -%}" + say("'Environment: ipython\\n'") + "{%- endif -%}",
                say(json.dumps(f"Cutting Knowledge Date: December 2023\nToday Date: {self.date_string}\n\n")),
                say("system_message" + eot),
                "{%- if tools -%}",
                "{%- set first_user_message = messages[0]['content'] | trim -%}{%- set messages = messages[1:] -%}",
                say(header("'user'") + " + " + json.dumps(TOOLS_INTRO)),
                "{%- for tool in tools -%}",
                "{%- set entry = tool if tool['function'] is defined else {'type': 'function', 'function': tool} -%}",
                say("entry | tojson(indent=4)") + say("'\\n\\n'"),
                "{%- endfor -%}",
                say("first_user_message" + eot),
                "{%- endif -%}",
                "{%- for message in messages -%}",
                "{%- if message['tool_calls'] is defined and message['tool_calls'] -%}",
                "{%- set call = message['tool_calls'][0]['function'] if message['tool_calls'][0]['function'] is "
                "defined else message['tool_calls'][0] -%}",
                say(
                    header("'assistant'")
                    + " + '{\"name\": \"' + call['name'] + '\", \"parameters\": ' + "
                    + jinja_arguments("call['arguments']", self.arguments_as_given)
                    + " + '}'"
                    + eot
                ),
                "{%- elif message['role'] == 'function' -%}",  # ffc's own form: the call's JSON as given
                say(header("'assistant'") + " + message['content']" + eot),
                "{%- elif message['role'] in ['tool', 'ipython', 'observation'] -%}",
                say(header("'ipython'") + " + (message['content'] | tojson)" + eot),
                "{%- else -%}",
                say(header("message['role']") + " + (message['content'] | trim)" + eot),
                "{%- endif -%}",
                "{%- endfor -%}",
                "{%- if add_generation_prompt -%}" + say(header("'assistant'")) + "{%- endif -%}",
            ]
        )


register(
    Llama31Template(
        name="llama3_1",
        assistant_prefix=_header("assistant"),
        assistant_end=EOT,
        tool_definitions=True,
        stop_words=(EOT, "<|eom_id|>"),
        notes=(
            "Llama 3.1/3.2/3.3 instruct as Meta's template renders them: the date header with the template's default "
            "date (26 Jul 2024; 3.2/3.3 would write the day of rendering), tools in the first user turn, one call per "
            'turn as {"name", "parameters"}, tool results as JSON strings. A turn with text or reasoning beside a '
            "call is refused (the template has no place for them; the exported template drops them, as Meta's). "
            "Arguments given as JSON text are written as the official template writes them: quoted, as a JSON string."
        ),
    ),
)
