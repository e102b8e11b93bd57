"""GLM (Zhipu AI): ChatGLM3, GLM-4."""

import json
import re
from dataclasses import dataclass
from typing import Literal

from .base import NextRoleEndTemplate, Rendered, Segment, arguments_object, parameter_types, register, typed_argument
from .custom import JINJA_SPLIT, CustomTemplate, Turns, jinja_head, split_reasoning
from .jinja import jinja_call, jinja_str

_GLM4 = dict(
    prefix="[gMASK]<sop>",
    system="<|system|>\n{content}",
    user="<|user|>\n{content}",
    assistant_end="",
    stop_words=("<|user|>", "<|observation|>"),
)

register(
    NextRoleEndTemplate(
        name="chatglm3",
        prefix="[gMASK]sop",
        system="<|system|> \n {content}",
        user="<|user|> \n {content}",
        observation="<|observation|> \n {content}",
        assistant_prefix="<|assistant|>",
        response_lead=" \n ",
        assistant_end="",
        stop_words=("<|user|>", "<|observation|>"),
        notes=(
            "ChatGLM3-6B, as its tokenizer_config.json's chat template writes it (a space around the newline after "
            "each role tag; openvino's copy has none before it, LLaMA-Factory's chatglm3 neither after). Responses "
            "end where the next <|user|> begins, so that tag is trained; a finished conversation gets a trained EOS "
            "that the official template does not render. Its template has no tool format: tool data is refused."
        ),
    ),
    NextRoleEndTemplate(
        name="glm4",
        **_GLM4,
        observation="<|observation|>\n{content}",
        assistant_prefix="<|assistant|>",
        response_lead="\n",
        notes=(
            "GLM-4-chat: responses end where the next <|user|> begins, so that tag is trained; a finished "
            "conversation gets a trained EOS that the official template does not render."
        ),
    ),
    NextRoleEndTemplate(
        name="glm4v",
        **_GLM4,
        assistant_prefix="<|assistant|>\n",  # its generation prompt has the newline (GLM-4's has not)
        notes=(
            "GLM-4.1V-Thinking with images: glm4's format (the official template has no tool turns); each <image> "
            "is written <|begin_of_image|><|image|><|end_of_image|> and the processor expands <|image|>. Responses "
            "carry the <think>/<answer> blocks as the data writes them."
        ),
    ),
)


GLM45_TOOLS = (
    "<|system|>\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}</tools>\n\n"
    "For each function call, output the function name and arguments within the following XML format:\n"
    "<tool_call>{{function-name}}\n<arg_key>{{arg-key-1}}</arg_key>\n<arg_value>{{arg-value-1}}</arg_value>\n"
    "<arg_key>{{arg-key-2}}</arg_key>\n<arg_value>{{arg-value-2}}</arg_value>\n...\n</tool_call>"
)
GLM45_ENDS = ("<|user|>", "<|observation|>")


@dataclass(frozen=True)
class GLM45Template(CustomTemplate, NextRoleEndTemplate):  # a NextRoleEndTemplate: its EOS is an addition
    """GLM-4.5: ``<think>`` blocks, XML tool calls (the function name right after ``<tool_call>``).

    Every response opens a think block: with its reasoning after the last user query, empty
    elsewhere (untrained unless ``enable_thinking`` is True). A response has no end token: the
    model stops by writing the next role tag, so the ``<|user|>`` or ``<|observation|>`` that
    follows a response is trained as its end, and a finished conversation ends with a trained EOS
    (the official template renders nothing there, so a model could not learn to stop).
    """

    reasoning_turns: Literal["official", "all"] = "official"  # "all": every response keeps its reasoning

    def render(self, messages, **kwargs) -> Rendered:
        rendered = super().render(messages, **kwargs)
        out: list[Segment] = []
        for seg in rendered.segments:
            tag = next((t for t in GLM45_ENDS if seg.text.startswith(t)), None)
            if tag and seg.kind == "prompt" and out and out[-1].kind == "response":
                out[-1] = Segment(out[-1].text + tag, "response", out[-1].turn)
                seg = Segment(seg.text[len(tag) :], "prompt", seg.turn)
            if seg.text:
                out.append(seg)
        if not kwargs.get("add_generation_prompt") and out and out[-1].kind == "response":
            out[-1] = Segment(out[-1].text + (kwargs.get("eos") or ""), "response", out[-1].turn)
        return Rendered(out)

    def turns(self, out: Turns, messages, *, bos, eos, system, tools, add_generation_prompt, enable_thinking):
        out.prompt("[gMASK]<sop>")
        if tools:
            out.prompt(GLM45_TOOLS.format(tools="".join(json.dumps(t, ensure_ascii=False) + "\n" for t in tools)))
        if system:
            out.prompt("<|system|>\n" + system)
        last_query = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        for index, message in enumerate(messages):
            if message["role"] == "user":
                content = self._content(message)
                nothink = enable_thinking is False and not content.endswith("/nothink")
                out.prompt("<|user|>\n" + content + ("/nothink" if nothink else ""))
            elif message["role"] == "observation":
                results = message.get("results") or [self._content(message)]
                out.prompt("<|observation|>" + "".join(f"\n<tool_response>\n{r}\n</tool_response>" for r in results))
            else:
                reasoning, text, calls = split_reasoning(message)
                latest = index > last_query or self.reasoning_turns == "all"
                reasoning = reasoning.strip() if latest and enable_thinking is not False else ""
                think = "\n<think>" + reasoning + "</think>"
                body = ("\n" + text.strip() if text.strip() else "") + "".join(map(_glm45_call, calls))
                if reasoning or enable_thinking is True:
                    out.prompt("<|assistant|>")
                    out.response(think + body)
                else:
                    out.prompt("<|assistant|>" + think)
                    out.response(body)
        if add_generation_prompt:
            out.prompt("<|assistant|>" + ("\n<think></think>" if enable_thinking is False else ""))

    def parse_calls(self, text, tools=None):
        """``<tool_call>NAME`` and ``<arg_key>k</arg_key><arg_value>v</arg_value>`` pairs: text values as they
        are, others as JSON (``tools``' parameter types decide for a text that reads as JSON)."""
        calls = []
        for match in re.finditer(r"<tool_call>([^\n<]+)(.*?)</tool_call>", text, flags=re.S):
            name, types = match.group(1).strip(), parameter_types(tools, match.group(1).strip())
            pairs = re.findall(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", match.group(2), flags=re.S)
            calls.append({"name": name, "arguments": {k: typed_argument(v, types.get(k)) for k, v in pairs}})
        if not calls:
            return text, []
        return re.sub(r"\s*<tool_call>.*?</tool_call>", "", text, flags=re.S).strip(), calls

    def jinja(self, default_system: str) -> str:
        s = jinja_str
        return (
            jinja_head(default_system) + "{{- '[gMASK]<sop>' -}}"
            "{%- if tools -%}{%- set t = namespace(text='') -%}{%- for tool in tools -%}"
            "{%- set entry = tool if tool['function'] is defined else {'type': 'function', 'function': tool} -%}"
            "{%- set t.text = t.text + (entry | tojson) + '\\n' -%}{%- endfor -%}"
            f"{{{{- {s(GLM45_TOOLS.split('{tools}')[0])} + t.text + "
            f"{s(GLM45_TOOLS.split('{tools}')[1].replace('{{', '{').replace('}}', '}'))} -}}}}"
            "{%- endif -%}"
            "{%- if system -%}{{- '<|system|>\\n' + system -}}{%- endif -%}"
            "{%- for message in loop_messages -%}"
            "{%- if message['role'] == 'user' -%}"
            "{%- set nothink = enable_thinking is defined and enable_thinking is false "
            "and not message['content'].endswith('/nothink') -%}"
            "{{- '<|user|>\\n' + message['content'] + ('/nothink' if nothink else '') -}}"
            "{%- elif message['role'] in ['tool', 'observation'] -%}"
            "{%- if loop.first or loop_messages[loop.index0 - 1]['role'] not in ['tool', 'observation'] -%}"
            "{{- '<|observation|>' -}}{%- endif -%}"
            "{{- '\\n<tool_response>\\n' + message['content'] + '\\n</tool_response>' -}}"
            "{%- else -%}"
            + JINJA_SPLIT
            + "{%- if not ((loop.index0 > ns.last_query or "
            + ("true" if self.reasoning_turns == "all" else "false")
            + ") and not (enable_thinking is defined and enable_thinking "
            "is false)) -%}{%- set reasoning = '' -%}{%- endif -%}"
            "{{- '<|assistant|>\\n<think>' + reasoning.strip() + '</think>' -}}"
            "{%- if text.strip() -%}{{- '\\n' + text.strip() -}}{%- endif -%}"
            "{%- for tool_call in calls -%}"
            + jinja_call(self)
            # Jinja cannot parse JSON text: arguments must be an object here (the official template fails too).
            + "{%- if call['arguments'] is not mapping -%}"
            "{{- raise_exception('GLM-4.5 writes each argument of a call: pass the arguments as an object') -}}"
            "{%- endif -%}{%- set args = call['arguments'] -%}"
            "{{- '\\n<tool_call>' + call['name'] + '\\n' -}}"
            "{%- for k, v in args.items() -%}"
            "{{- '<arg_key>' + k + '</arg_key>\\n<arg_value>' + (v if v is string else (v | tojson)) + "
            "'</arg_value>\\n' -}}"
            "{%- endfor -%}{{- '</tool_call>' -}}{%- endfor -%}"
            "{%- endif -%}{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{- '<|assistant|>' -}}"
            "{%- if enable_thinking is defined and enable_thinking is false -%}{{- '\\n<think></think>' -}}"
            "{%- endif -%}{%- endif -%}"
        )


def _glm45_call(call: dict) -> str:
    args = arguments_object(call)
    pairs = "".join(
        f"<arg_key>{k}</arg_key>\n<arg_value>{v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
        "</arg_value>\n"
        for k, v in args.items()
    )
    return "\n<tool_call>" + call["name"] + "\n" + pairs + "</tool_call>"


register(
    GLM45Template(
        name="glm4_moe",
        tool_definitions=True,
        stop_words=GLM45_ENDS,
        notes=(
            "GLM-4.5 / 4.6 (LLaMA-Factory's glm4_moe): responses end where the next <|user|> or <|observation|> "
            "begins, so that tag is trained; a finished conversation gets a trained EOS that the official template "
            "does not render. With a JSON-string arguments value the official template fails; ffc decodes it. "
            "Several results of one turn's calls are each in their own <tool_response>, as officially."
        ),
    ),
)
