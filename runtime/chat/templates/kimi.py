"""Kimi (Moonshot AI): Kimi-K2-Instruct."""

import json
import re
from dataclasses import dataclass

from .base import json_prefix, register
from .custom import CustomTemplate, Turns, jinja_head, split_reasoning
from .jinja import jinja_call, jinja_str

SYSTEM, USER, ASSISTANT = (
    "<|im_system|>system<|im_middle|>",
    "<|im_user|>user<|im_middle|>",
    "<|im_assistant|>assistant<|im_middle|>",
)
END = "<|im_end|>"
SECTION = ("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>")
CALL = ("<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>")
# The official template writes a backslash and an n here, not a newline; so does ffc.
RETURN = "<|im_system|>tool<|im_middle|>## Return of {id}\\n"


@dataclass(frozen=True)
class KimiTemplate(CustomTemplate):
    """Kimi-K2: the tools list in a ``tool_declare`` turn, calls with ids ``functions.<name>:<index>``.

    A tool result names the call it answers; ffc's data holds no call ids, so a result is
    labelled with the id Kimi's API gives call i of the turn before it, for result i.
    Reasoning beside calls is not rendered (the K2 instruct template has no reasoning).
    """

    def turns(self, out: Turns, messages, *, bos, eos, system, tools, add_generation_prompt, enable_thinking):
        if tools:
            out.prompt("<|im_system|>tool_declare<|im_middle|>" + json.dumps(tools, ensure_ascii=False) + END)
        out.prompt(SYSTEM + system + END)
        last_ids: list[str] = [""]  # the ids of the last turn's calls; result i answers call i
        for message in messages:
            if message["role"] == "user":
                out.prompt(USER + self._content(message) + END)
            elif message["role"] == "observation":
                for i, result in enumerate(message.get("results") or [self._content(message)]):
                    out.prompt(RETURN.format(id=last_ids[min(i, len(last_ids) - 1)]) + result + END)
            else:
                _, text, calls = split_reasoning(message) if message["role"] == "function" else ("", "", [])
                if message["role"] != "function":
                    text = self._content(message)
                out.prompt(ASSISTANT)
                body = text
                if calls:
                    ids = [f"functions.{c['name']}:{i}" for i, c in enumerate(calls)]
                    # A result names its call's id: the data's (an OpenAI tool_call_id), else Kimi's own.
                    last_ids = [c.get("id") or i for i, c in zip(ids, calls)]
                    body += SECTION[0]
                    body += "".join(
                        CALL[0] + i + CALL[1] + self.arguments_text(c) + CALL[2] for i, c in zip(ids, calls)
                    )
                    body += SECTION[1]
                out.response(body + END)
        if add_generation_prompt:
            out.prompt(ASSISTANT)

    def parse_calls(self, text, tools=None):
        """The section of calls ``<|tool_call_begin|>functions.NAME:i<|tool_call_argument_begin|>{...}<|tool_call_end|>``."""
        head, marker, section = text.partition(SECTION[0])
        pattern = re.escape(CALL[0]) + r"(.*?)" + re.escape(CALL[1]) + r"(.*?)" + re.escape(CALL[2])
        calls = []
        for match in re.finditer(pattern, section, flags=re.S):
            arguments, rest = json_prefix(match.group(2))
            name = match.group(1).strip().removeprefix("functions.").rpartition(":")[0]
            if arguments is None or rest.strip() or not name:
                return text, []
            calls.append({"name": name, "arguments": arguments, "id": match.group(1).strip()})
        return (head, calls) if marker and calls else (text, [])

    def jinja(self, default_system: str) -> str:
        s = jinja_str
        return (
            jinja_head(default_system)
            + "{%- if tools -%}{%- set acc = namespace(tools=[]) -%}{%- for tool in tools -%}"
            "{%- set acc.tools = acc.tools + [tool if tool['function'] is defined else {'type': 'function', 'function': "
            "tool}] -%}{%- endfor -%}"
            f"{{{{- '<|im_system|>tool_declare<|im_middle|>' + (acc.tools | tojson) + {s(END)} -}}}}{{%- endif -%}}"
            f"{{{{- {s(SYSTEM)} + system + {s(END)} -}}}}"
            "{%- set last = namespace(ids=[''], k=0) -%}"
            "{%- for message in loop_messages -%}"
            f"{{%- if message['role'] == 'user' -%}}{{{{- {s(USER)} + message['content'] + {s(END)} -}}}}"
            "{%- elif message['role'] in ['tool', 'observation'] -%}"
            "{%- set id = message['tool_call_id'] if message['tool_call_id'] is defined "
            "else last.ids[[last.k, last.ids | length - 1] | min] -%}{%- set last.k = last.k + 1 -%}"
            f"{{{{- {s(RETURN.split('{id}')[0])} + id + {s(RETURN.split('{id}')[1])} + message['content'] + "
            f"{s(END)} -}}}}"
            "{%- else -%}"
            f"{{{{- {s(ASSISTANT)} + (message['content'] if message['content'] is string else '') -}}}}"
            "{%- if message['tool_calls'] is defined and message['tool_calls'] -%}"
            "{%- set last.ids = [] -%}{%- set last.k = 0 -%}"
            f"{{{{- {s(SECTION[0])} -}}}}"
            "{%- for tool_call in message['tool_calls'] -%}"
            + jinja_call(self)
            + "{%- set id = 'functions.' + call['name'] + ':' + (loop.index0 | string) -%}"
            "{%- set given = tool_call['id'] if tool_call['id'] is string else '' -%}"
            "{%- set last.ids = last.ids + [given or id] -%}"
            f"{{{{- {s(CALL[0])} + id + {s(CALL[1])} + args + {s(CALL[2])} -}}}}"
            f"{{%- endfor -%}}{{{{- {s(SECTION[1])} -}}}}{{%- endif -%}}"
            f"{{{{- {s(END)} -}}}}"
            "{%- endif -%}{%- endfor -%}"
            f"{{%- if add_generation_prompt -%}}{{{{- {s(ASSISTANT)} -}}}}{{%- endif -%}}"
        )


register(
    KimiTemplate(
        name="kimi_k2",
        default_system="You are a helpful assistant",
        tool_definitions=True,
        stop_words=(END,),
        notes=(
            "Kimi-K2-Instruct (no LLaMA-Factory name): calls are named functions.<name>:<i>, as officially; a tool "
            "result is labelled with the id of the call at its position in the turn before (its OpenAI id where the "
            "data gives one, else Kimi's functions.<name>:<i>), which is the official template's tool_call_id in "
            "consistent data. Arguments given as JSON text are quoted through tojson, as officially. Reasoning is not "
            "rendered: K2-Instruct has none."
        ),
    ),
)
