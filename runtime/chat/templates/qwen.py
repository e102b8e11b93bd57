"""Qwen (Alibaba): Qwen2/2.5, Qwen3 (hybrid), Qwen3-2507 instruct (qwen3_nothink) and thinking
(qwen3_thinking), Qwen3.5 and Qwen3.6 (XML tool calls)."""

import json
import re
from dataclasses import dataclass

from .base import (
    ChatTemplate,
    ConversationError,
    ReasoningTemplate,
    arguments_object,
    parameter_types,
    register,
    tool_calls_of,
    typed_argument,
)
from .custom import CustomTemplate, Turns, jinja_head
from .generic import CHATML
from .jinja import generation_opening_jinja, jinja_str

_QWEN_TOOLS = dict(
    observation="<|im_start|>user\n<tool_response>\n{content}\n</tool_response><|im_end|>\n",
    function="<tool_call>\n{content}\n</tool_call>",
    tool_result_separator="\n</tool_response>\n<tool_response>\n",  # each result in its own block
    tools=(
        "{system}\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{content}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
        "</tool_call>"
    ),
)

register(
    ChatTemplate(
        name="qwen",
        **CHATML,
        **_QWEN_TOOLS,
        default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
        notes="Qwen2/2.5 instruct. Tool calls render as <tool_call> blocks; observations as <tool_response>.",
    ),
    ReasoningTemplate(
        name="qwen3",
        **CHATML,
        **_QWEN_TOOLS,
        arguments_as_given=True,  # Qwen3's templates write JSON-text arguments as given
        tools_without_system=_QWEN_TOOLS["tools"].removeprefix("{system}\n\n"),
        notes=(
            "Qwen3 (hybrid thinking): responses after the last user query carry a <think> block (empty when "
            "there is no reasoning), earlier ones drop it, as the official template does."
        ),
    ),
)

# Vision-language variants: their family's text format; ffc.runtime.chat.vision expands the <image> marks.
register(
    ChatTemplate(
        name="qwen2_vl",
        **CHATML,
        **_QWEN_TOOLS,
        default_system="You are a helpful assistant.",
        notes=(
            "Qwen2-VL and Qwen2.5-VL instruct (images): <image> in a prompt becomes "
            "<|vision_start|><|image_pad|>...<|vision_end|> with the processor's token count."
        ),
    ),
    ChatTemplate(
        name="intern_vl",
        **CHATML,
        **_QWEN_TOOLS,
        default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
        notes=(
            "InternVL3 (images): its tokenizer's template is Qwen2.5's, default system prompt included (LLaMA-Factory's "
            "intern_vl uses InternVL's Chinese one instead: set data.default_system for it); each <image> is written "
            "<IMG_CONTEXT> and a newline, as the -hf processor template writes an image part, and the processor "
            "expands it to <img><IMG_CONTEXT>...</img>."
        ),
    ),
    ChatTemplate(
        name="qwen3_vl",
        **CHATML,
        **_QWEN_TOOLS,
        arguments_as_given=True,  # Qwen3's templates write JSON-text arguments as given
        notes=(
            "Qwen3-VL instruct (images), no default system prompt; with tools and no system prompt the official "
            "template starts the system turn with '# Tools', ffc with a blank line before it."
        ),
    ),
)


@dataclass(frozen=True)
class OpenThinkTemplate(ReasoningTemplate):
    """Qwen3 thinking-2507: the generation prompt itself opens ``<think>\n`` (whatever enable_thinking says).

    The model never writes that opening, so in a response carrying a think block it belongs to the
    prompt (untrained); the rest of the block and the answer are the response.
    """

    def response_parts(self, content, message, index, count, last_query, enable_thinking):
        opening, body = super().response_parts(content, message, index, count, last_query, enable_thinking)
        if not opening and body.startswith(self.think_open):
            return self.think_open, body[len(self.think_open) :]
        return opening, body

    def generation_opening(self, enable_thinking) -> str:
        return self.think_open


@generation_opening_jinja.register
def _(t: OpenThinkTemplate) -> str:
    return jinja_str(t.think_open)


register(
    ChatTemplate(
        name="qwen3_nothink",
        **CHATML,
        **_QWEN_TOOLS,
        arguments_as_given=True,  # Qwen3's templates write JSON-text arguments as given
        tools_without_system=_QWEN_TOOLS["tools"].removeprefix("{system}\n\n"),
        notes=(
            "Qwen3 instruct-2507 (LLaMA-Factory's qwen3_nothink): ChatML with Qwen3's tool format and no <think> "
            "blocks; reasoning in the data is not rendered by the official template (use qwen3 or qwen3_thinking)."
        ),
    ),
    OpenThinkTemplate(
        name="qwen3_thinking",
        **CHATML,
        **_QWEN_TOOLS,
        arguments_as_given=True,  # Qwen3's templates write JSON-text arguments as given
        tools_without_system=_QWEN_TOOLS["tools"].removeprefix("{system}\n\n"),
        notes=(
            "Qwen3 thinking-2507: as qwen3, but the generation prompt always opens <think> (thinking cannot be "
            "turned off), so that opening is prompt, not trained, in responses that carry a think block."
        ),
    ),
)


QWEN35_TOOLS = (
    "# Tools\n\nYou have access to the following functions:\n\n<tools>",
    "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n<tool_call>\n"
    "<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
    "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n"
    "</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n- Function calls MUST follow the specified "
    "format: an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags\n"
    "- Required parameters MUST be specified\n- You may provide optional reasoning for your function call in natural "
    "language BEFORE the function call, but NOT after\n- If there is no function call available, answer the question "
    "like normal with your current knowledge and do not tell the user about function calls\n</IMPORTANT>",
)
EMPTY_THINK = "<think>\n\n</think>\n\n"


@dataclass(frozen=True)
class Qwen35Template(CustomTemplate):
    """Qwen3.5/3.6: the tools list before the system prompt, calls as XML (<function=...><parameter=...>),
    every response after the last user query with a think block (empty when there is no reasoning),
    message texts trimmed. ``json_values``: 3.6 writes non-text argument values as JSON (3.5 as Python
    text: True, None). enable_thinking and reasoning_turns as for qwen3."""

    json_values: bool = True
    reasoning_turns: str = "official"

    def _value(self, value) -> str:
        if isinstance(value, str):
            return value
        if self.json_values or isinstance(value, (dict, list)):
            return json.dumps(value, ensure_ascii=False)
        return str(value)

    def _calls(self, text: str, calls: list[dict]) -> str:
        out = ""
        for index, call in enumerate(calls):
            out += ("\n\n" if text else "") if index == 0 else "\n"
            out += f"<tool_call>\n<function={call['name']}>\n"
            out += "".join(
                f"<parameter={k}>\n{self._value(v)}\n</parameter>\n" for k, v in arguments_object(call).items()
            )
            out += "</function>\n</tool_call>"
        return out

    def turns(self, out: Turns, messages, *, bos, eos, system, tools, add_generation_prompt, enable_thinking):
        system = system.strip()
        if tools:
            listed = "".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools)
            tail = "\n\n" + system if system else ""
            out.prompt("<|im_start|>system\n" + QWEN35_TOOLS[0] + listed + QWEN35_TOOLS[1] + tail + "<|im_end|>\n")
        elif system:
            out.prompt("<|im_start|>system\n" + system + "<|im_end|>\n")
        last_query = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        if last_query < 0:
            raise ConversationError("the conversation has no user message")
        for index, message in enumerate(messages):
            role = message["role"]
            if role == "user":
                out.prompt("<|im_start|>user\n" + message["content"].strip() + "<|im_end|>\n")
                continue
            if role == "observation":
                out.prompt(
                    "<|im_start|>user\n<tool_response>\n"
                    + message["content"].strip()
                    + "\n</tool_response><|im_end|>\n"
                )
                continue
            if role == "function":
                text, reasoning, calls = tool_calls_of(message["content"])
                text = text.strip()
            else:
                text, reasoning, calls = message["content"].strip(), message.get("reasoning_content"), []
            if "</think>" in text:
                head, _, text = text.partition("</think>")
                reasoning = reasoning if isinstance(reasoning, str) else head.rstrip("\n").split("<think>")[-1]
                text = text.lstrip("\n")
            reasoning = "" if enable_thinking is False else (reasoning or "").strip()
            out.prompt("<|im_start|>assistant\n")
            think = ""
            if index > last_query or self.reasoning_turns == "all":
                if reasoning or enable_thinking is True:
                    think = "<think>\n" + reasoning + "\n</think>\n\n"
                else:  # an empty block the model is given, not trained (enable_thinking false or unset)
                    out.prompt(EMPTY_THINK)
            out.response(think + text + self._calls(text, calls) + "<|im_end|>")
            out.prompt("\n")
        if add_generation_prompt:
            out.prompt("<|im_start|>assistant\n" + (EMPTY_THINK if enable_thinking is False else "<think>\n"))

    def parse_calls(self, text, tools=None):
        """``<tool_call><function=NAME><parameter=k>\\nv\\n</parameter>...</function></tool_call>``: values as
        ``typed_argument`` reads them (``tools``' parameter types decide for a text that reads as JSON)."""
        calls = []
        pattern = r"<tool_call>\s*<function=([^>\n]+)>(.*?)</function>\s*</tool_call>"
        for match in re.finditer(pattern, text, flags=re.S):
            name, types = match.group(1).strip(), parameter_types(tools, match.group(1).strip())
            pairs = re.findall(r"<parameter=([^>\n]+)>\n?(.*?)\n?</parameter>", match.group(2), flags=re.S)
            calls.append({"name": name, "arguments": {k: typed_argument(v, types.get(k)) for k, v in pairs}})
        if not calls:
            return text, []
        return re.sub(r"\s*" + pattern, "", text, flags=re.S).strip(), calls

    def jinja(self, default_system: str) -> str:
        keep_all = (
            "true" if self.reasoning_turns == "all" else "(preserve_thinking is defined and preserve_thinking is true)"
        )
        value = (
            "(args_value if args_value is string else (args_value | tojson))"
            if self.json_values
            else "((args_value | tojson) if args_value is mapping or (args_value is sequence and args_value is not "
            "string) else (args_value | string))"
        )
        return (
            jinja_head(default_system) + "{%- set system = system | trim -%}"
            "{%- if tools -%}" + "{{- '<|im_start|>system\\n' + " + json.dumps(QWEN35_TOOLS[0]) + " -}}"
            "{%- for tool in tools -%}"
            "{%- set entry = tool if tool['function'] is defined else {'type': 'function', 'function': tool} -%}"
            "{{- '\\n' + (entry | tojson) -}}{%- endfor -%}" + "{{- " + json.dumps(QWEN35_TOOLS[1]) + " -}}"
            "{%- if system -%}{{- '\\n\\n' + system -}}{%- endif -%}{{- '<|im_end|>\\n' -}}"
            "{%- elif system -%}{{- '<|im_start|>system\\n' + system + '<|im_end|>\\n' -}}{%- endif -%}"
            "{%- set thinking = enable_thinking is not defined or enable_thinking is not false -%}"
            "{%- for message in loop_messages -%}"
            "{%- set content = (message['content'] if message['content'] is string else '') | trim -%}"
            "{%- if message['role'] == 'user' -%}{{- '<|im_start|>user\\n' + content + '<|im_end|>\\n' -}}"
            "{%- elif message['role'] in ['tool', 'observation'] -%}"
            "{%- if loop.first or loop_messages[loop.index0 - 1]['role'] not in ['tool', 'observation'] -%}"
            "{{- '<|im_start|>user' -}}{%- endif -%}"
            "{{- '\\n<tool_response>\\n' + content + '\\n</tool_response>' -}}"
            "{%- if loop.last or loop_messages[loop.index0 + 1]['role'] not in ['tool', 'observation'] -%}"
            "{{- '<|im_end|>\\n' -}}{%- endif -%}"
            "{%- else -%}"
            "{%- set reasoning = message['reasoning_content'] if message['reasoning_content'] is string else '' -%}"
            "{%- if '</think>' in content -%}"
            "{%- if message['reasoning_content'] is not string -%}"
            "{%- set reasoning = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1] -%}{%- endif -%}"
            "{%- set content = content.split('</think>')[-1].lstrip('\\n') -%}"
            "{%- endif -%}"
            "{%- set reasoning = reasoning | trim if thinking else '' -%}"
            + "{%- if loop.index0 > ns.last_query or "
            + keep_all
            + " -%}"
            "{{- '<|im_start|>assistant\\n<think>\\n' + reasoning + '\\n</think>\\n\\n' + content -}}"
            "{%- else -%}{{- '<|im_start|>assistant\\n' + content -}}{%- endif -%}"
            "{%- if message['tool_calls'] is defined and message['tool_calls'] -%}"
            "{%- for tool_call in message['tool_calls'] -%}"
            "{%- set call = tool_call['function'] if tool_call['function'] is defined else tool_call -%}"
            "{%- if loop.first -%}{{- ('\\n\\n' if content else '') + '<tool_call>\\n<function=' + call['name'] + '>\\n' -}}"
            "{%- else -%}{{- '\\n<tool_call>\\n<function=' + call['name'] + '>\\n' -}}{%- endif -%}"
            "{%- for args_name, args_value in call['arguments'] | items -%}"
            + "{{- '<parameter=' + args_name + '>\\n' + "
            + value
            + " + '\\n</parameter>\\n' -}}"
            "{%- endfor -%}{{- '</function>\\n</tool_call>' -}}"
            "{%- endfor -%}{%- endif -%}"
            "{{- '<|im_end|>\\n' -}}"
            "{%- endif -%}"
            "{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
            "{%- if enable_thinking is defined and enable_thinking is false -%}{{- '<think>\\n\\n</think>\\n\\n' -}}"
            "{%- else -%}{{- '<think>\\n' -}}{%- endif -%}{%- endif -%}"
        )


register(
    Qwen35Template(
        name="qwen3_5",
        assistant_prefix="<|im_start|>assistant\n",
        assistant_end="<|im_end|>",
        tool_definitions=True,
        tool_result_separator="\n</tool_response>\n<tool_response>\n",
        json_values=False,
        stop_words=("<|im_end|>",),
        notes=(
            "Qwen3.5 (4B and larger: thinking on unless enable_thinking is false; Qwen3.5-0.8B's template turns it on "
            "only when enable_thinking is true, so its saved template differs there). Tools before the system prompt, "
            "XML calls with one <parameter=...> per argument (non-text values as Python text, as the template's "
            "|string does), a think block on every response after the last user query. Arguments must be an object "
            "(the template iterates them; JSON text is decoded, where the official template fails)."
        ),
    ),
    Qwen35Template(
        name="qwen3_6",
        assistant_prefix="<|im_start|>assistant\n",
        assistant_end="<|im_end|>",
        tool_definitions=True,
        tool_result_separator="\n</tool_response>\n<tool_response>\n",
        stop_words=("<|im_end|>",),
        notes=(
            "Qwen3.6: as qwen3_5, with non-text argument values as JSON; the template's preserve_thinking (reasoning "
            "in every turn) is ffc's data.reasoning_turns: all."
        ),
    ),
)
