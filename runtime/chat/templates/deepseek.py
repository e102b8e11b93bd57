"""DeepSeek: V3, R1 (and its Qwen/Llama distills), R1-0528, V3.1, DeepSeek-Coder."""

import json
from dataclasses import dataclass
from typing import Literal

from .base import ChatTemplate, json_prefix, register
from .custom import JINJA_SPLIT, CustomTemplate, Turns, jinja_head, split_reasoning
from .jinja import jinja_call, jinja_str

USER, ASSISTANT, END = "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"
CALLS_BEGIN, CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL_BEGIN, CALL_SEP, CALL_END = "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>"
OUTPUT = ("<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>")
OUTPUTS = ("<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>")
CLOSED = "<think>\n\n</think>\n\n"  # R1 with thinking turned off

# DeepSeek-V3.1's model card: the tool list follows the system prompt (its chat template ignores ``tools``).
V31_TOOLS_HEAD = "\n\n## Tools\nYou have access to the following tools:\n\n"
V31_TOOL = "### {name}\nDescription: {description}\n\nParameters: {parameters}\n\n"
V31_TOOLS_TAIL = (
    "IMPORTANT: ALWAYS adhere to this exact format for tool use:\n"
    f"{CALLS_BEGIN}{CALL_BEGIN}tool_call_name{CALL_SEP}tool_call_arguments{CALL_END}{{additional_tool_calls}}{CALLS_END}"
    "\n\nWhere:\n- `tool_call_name` must be an exact match to one of the available tools\n"
    "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema\n"
    "- For multiple tool calls, chain them directly without separators or spaces"
)


@dataclass(frozen=True)
class DeepSeekTemplate(CustomTemplate):
    """DeepSeek's own tool tokens; a response right after tool outputs has no <｜Assistant｜> tag.

    ``version`` "v3": as "r1" without thinking modes (V3 is no reasoning model). "r1": calls are ``function<｜tool▁sep｜>name`` + a json code block, joined by newlines,
    tool outputs are wrapped in <｜tool▁outputs▁begin/end｜>, reasoning is ``<think>\\n...\\n</think>\\n\\n``
    (``think_in_prompt``: the generation prompt already opens ``<think>\\n``, so it is untrained).
    "v3.1": ``name<｜tool▁sep｜>arguments`` chained, bare outputs, and every response after a user turn
    opens ``</think>`` (non-thinking) or ``<think>`` (thinking: its reasoning, then ``</think>``).
    Reasoning is kept in the responses after the last user query, as each official template's
    generation does; earlier responses drop it, as the official templates do.
    """

    version: Literal["v3", "r1", "v3.1"] = "r1"
    arguments_as_given: bool = True  # DeepSeek's templates concatenate the arguments text as given
    think_in_prompt: bool = True
    output_separator: str = ""  # between the output blocks of several results (R1-0528: a newline)
    reasoning_turns: Literal["official", "all"] = "official"  # "all": every response keeps its reasoning

    def turns(self, out: Turns, messages, *, bos, eos, system, tools, add_generation_prompt, enable_thinking):
        out.prompt(bos + system + self._tool_prompt(tools))
        last_query = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        for index, message in enumerate(messages):
            if message["role"] == "user":
                out.prompt(USER + self._content(message))
                continue
            if message["role"] == "observation":
                out.prompt(self._outputs(message.get("results") or [self._content(message)]))
                continue
            reasoning, text, calls = split_reasoning(message)
            after_tool = messages[index - 1]["role"] == "observation"
            latest = index > last_query or self.reasoning_turns == "all"
            # A think block: the reasoning, or an empty one where enable_thinking=True asks for one.
            think = latest and enable_thinking is not False and (bool(reasoning) or enable_thinking is True)
            opening, body = self._opening(reasoning if think else "", think, bool(calls), after_tool)
            if enable_thinking is False and latest and not after_tool and self.version == "r1":
                opening += CLOSED  # thinking off: a closed, empty block in the prompt
            out.prompt(opening)
            out.response(body + text + self._calls(calls) + END)
        if add_generation_prompt and messages[-1]["role"] != "observation":
            if self.version == "v3.1":
                out.prompt(ASSISTANT + ("<think>" if enable_thinking is True else "</think>"))
            else:
                off = enable_thinking is False and self.version == "r1"
                opening = CLOSED if off else "<think>\n" if self.think_in_prompt else ""
                out.prompt(ASSISTANT + opening)

    def _opening(self, reasoning: str, think: bool, calls: bool, after_tool: bool) -> tuple[str, str]:
        """(untrained opening, start of the trained body) of a response."""
        if self.version == "v3.1":  # V3.1 calls tools in non-thinking mode only
            if after_tool:
                return "", ""
            if think and not calls:
                return ASSISTANT + "<think>", reasoning + "</think>"
            return ASSISTANT + "</think>", ""
        opening = "" if after_tool else ASSISTANT
        if not think:
            return opening, ""
        if self.think_in_prompt and not after_tool:
            return opening + "<think>\n", reasoning + "\n</think>\n\n"
        return opening, "<think>\n" + reasoning + "\n</think>\n\n"

    def _calls(self, calls: list[dict]) -> str:
        if not calls:
            return ""
        if self.version == "v3.1":
            parts = [CALL_BEGIN + c["name"] + CALL_SEP + self.arguments_text(c) + CALL_END for c in calls]
        else:
            parts = [
                CALL_BEGIN
                + "function"
                + CALL_SEP
                + c["name"]
                + "\n```json\n"
                + self.arguments_text(c)
                + "\n```"
                + CALL_END
                for c in calls
            ]
        return CALLS_BEGIN + ("" if self.version == "v3.1" else "\n").join(parts) + CALLS_END

    def _outputs(self, results: list[str]) -> str:
        """A turn's tool results, each in its own output block."""
        blocks = self.output_separator.join(OUTPUT[0] + r + OUTPUT[1] for r in results)
        return blocks if self.version == "v3.1" else OUTPUTS[0] + blocks + OUTPUTS[1]

    def _tool_prompt(self, tools: list[dict]) -> str:
        if not tools:
            return ""
        entries = "".join(
            V31_TOOL.format(
                name=t["function"]["name"],
                description=t["function"].get("description", ""),
                parameters=json.dumps(t["function"].get("parameters", {}), ensure_ascii=False),
            )
            for t in tools
        )
        return V31_TOOLS_HEAD + entries + V31_TOOLS_TAIL

    def parse_calls(self, text, tools=None):
        """``<｜tool▁calls▁begin｜>`` then each ``<｜tool▁call▁begin｜>`` call: ``function<｜tool▁sep｜>NAME`` and
        a json code block (V3, R1), or ``NAME<｜tool▁sep｜>{...}`` (V3.1)."""
        head, marker, section = text.partition(CALLS_BEGIN)
        calls = []
        for part in section.split(CALL_BEGIN)[1:]:
            part = part.split(CALL_END)[0]
            name, _, arguments = part.partition(CALL_SEP)
            if self.version != "v3.1":
                name, _, arguments = arguments.partition("\n")
                arguments = arguments.strip().removeprefix("```json").removesuffix("```")
            value, rest = json_prefix(arguments)
            if value is None or rest.strip() or not name.strip():
                return text, []
            calls.append({"name": name.strip(), "arguments": value})
        return (head, calls) if marker and calls else (text, [])

    def jinja(self, default_system: str) -> str:
        v31 = self.version == "v3.1"
        s = jinja_str
        if v31:
            tools = (
                "{%- if tools -%}{%- set t = namespace(text='') -%}{%- for tool in tools -%}"
                "{%- set f = tool['function'] if tool['function'] is defined else tool -%}"
                "{%- set t.text = t.text + '### ' + f['name'] + '\\nDescription: ' + (f['description'] or '') + "
                "'\\n\\nParameters: ' + ((f['parameters'] if f['parameters'] is defined else {}) | tojson) + '\\n\\n' -%}"
                f"{{%- endfor -%}}{{{{- {s(V31_TOOLS_HEAD)} + t.text + {s(V31_TOOLS_TAIL)} -}}}}{{%- endif -%}}"
            )
            opening = (
                "{%- if after_tool -%}{%- set opening = '' -%}{%- set body = '' -%}"
                f"{{%- elif think and not calls -%}}{{%- set opening = {s(ASSISTANT + '<think>')} -%}}"
                "{%- set body = reasoning + '</think>' -%}"
                f"{{%- else -%}}{{%- set opening = {s(ASSISTANT + '</think>')} -%}}{{%- set body = '' -%}}{{%- endif -%}}"
            )
            call = f"{s(CALL_BEGIN)} + call['name'] + {s(CALL_SEP)} + args + {s(CALL_END)}"
            output = f"{s(OUTPUT[0])} + message['content'] + {s(OUTPUT[1])}"
            output_open = output_close = "''"
            generation = f"{s(ASSISTANT)} + ('<think>' if mode is true else '</think>')"
        else:
            tools = "{%- if tools -%}{{- raise_exception('this template has no format for tool definitions') -}}{%- endif -%}"
            think = "'<think>\\n'" if self.think_in_prompt else "''"
            opening = (
                f"{{%- set opening = '' if after_tool else {s(ASSISTANT)} -%}}{{%- set body = '' -%}}"
                "{%- if think and " + ("true" if self.think_in_prompt else "false") + " and not after_tool -%}"
                "{%- set opening = opening + '<think>\\n' -%}{%- set body = reasoning + '\\n</think>\\n\\n' -%}"
                "{%- elif think -%}{%- set body = '<think>\\n' + reasoning + '\\n</think>\\n\\n' -%}{%- endif -%}"
                "{%- if mode is false and "
                + ("true" if self.version == "r1" else "false")
                + " and (loop.index0 > ns.last_query or "
                + ("true" if self.reasoning_turns == "all" else "false")
                + ") and not after_tool -%}{%- set opening = opening + '<think>\\n\\n</think>\\n\\n' -%}{%- endif -%}"
            )
            call = (
                f"{s(CALL_BEGIN + 'function' + CALL_SEP)} + call['name'] + '\\n```json\\n' + args + '\\n```' + "
                f"{s(CALL_END)}"
            )
            output = f"{s(OUTPUT[0])} + message['content'] + {s(OUTPUT[1])}"
            output_open, output_close = s(OUTPUTS[0]), s(OUTPUTS[1])
            closed = "mode is false" if self.version == "r1" else "false"
            generation = f"{s(ASSISTANT)} + ('<think>\\n\\n</think>\\n\\n' if {closed} else {think})"
        separator = "''" if v31 else "'\\n'"
        return (
            jinja_head(default_system)
            + "{%- set mode = thinking if thinking is defined else (enable_thinking if enable_thinking is defined "
            "else none) -%}" + "{{- bos + system -}}" + tools + "{%- for message in loop_messages -%}"
            "{%- set after_tool = not loop.first and loop_messages[loop.index0 - 1]['role'] in ['tool', 'observation'] -%}"
            f"{{%- if message['role'] == 'user' -%}}{{{{- {s(USER)} + message['content'] -}}}}"
            "{%- elif message['role'] in ['tool', 'observation'] -%}"
            # consecutive tool messages are one turn's results: one outputs block around them
            "{%- set first = loop.first or loop_messages[loop.index0 - 1]['role'] not in ['tool', 'observation'] -%}"
            "{%- set final = loop.last or loop_messages[loop.index0 + 1]['role'] not in ['tool', 'observation'] -%}"
            f"{{{{- ({output_open} if first else {s(self.output_separator)}) + {output} + "
            f"({output_close} if final else '') -}}}}"
            "{%- else -%}"
            + JINJA_SPLIT
            + "{%- set think = (loop.index0 > ns.last_query or "
            + ("true" if self.reasoning_turns == "all" else "false")
            + ") and mode is not false and (reasoning or mode is true) -%}"
            + opening
            + "{%- set body = body + text -%}"
            "{%- if calls -%}{%- set c = namespace(text='') -%}{%- for tool_call in calls -%}"
            + jinja_call(self)
            + f"{{%- set c.text = c.text + ({separator} if not loop.first else '') + {call} -%}}"
            f"{{%- endfor -%}}{{%- set body = body + {s(CALLS_BEGIN)} + c.text + {s(CALLS_END)} -%}}{{%- endif -%}}"
            f"{{{{- opening + body + {s(END)} -}}}}"
            "{%- endif -%}{%- endfor -%}"
            "{%- if add_generation_prompt and loop_messages[-1]['role'] not in ['tool', 'observation'] -%}"
            f"{{{{- {generation} -}}}}{{%- endif -%}}"
        )


register(
    DeepSeekTemplate(
        name="deepseek3",
        version="v3",
        think_in_prompt=False,
        output_separator="\n",
        notes=(
            "DeepSeek-V3 (R1 differs: its generation prompt opens a <think> block). Tool calls and outputs with "
            "DeepSeek's tokens, as V3's template writes them when a calling turn's content is null (OpenAI's form; "
            "with text beside the calls the official template drops the calls, ffc writes the text before them, as "
            "R1's template does). The official template never closes a turn of a single call and writes the outputs "
            "opening only in the first tool round; ffc closes every calling turn (<｜tool▁calls▁end｜> and the EOS, "
            "so the model learns to stop) and opens every round's outputs, as R1 and V3-0324 do. Reasoning in the data "
            "is kept as a <think> block in the responses after the last user query (the official template drops "
            "reasoning_content); tool definitions have no official format (refused)."
        ),
    ),
    DeepSeekTemplate(
        name="deepseekr1",
        notes=(
            "DeepSeek-R1 and its distills (R1-Distill-Qwen/Llama), their current template: the generation prompt "
            "opens <think>\\n. The official template strips the reasoning from every response, the last one too; "
            "ffc keeps it in the responses after the last user query (what the model generates after <think>\\n) "
            "and drops it from earlier ones, as the official rendering does. Text after </think> loses its leading "
            "newlines (the official template keeps them when the reasoning is inline). Tool definitions have no "
            "official format (refused); calls and outputs use R1's tokens, and the outputs markers are written for "
            "every tool round (the official template writes <｜tool▁outputs▁begin｜> only in the first). "
            "enable_thinking=False drops all reasoning and closes an empty think block in the prompt (R1 has no "
            "official off mode)."
        ),
    ),
    DeepSeekTemplate(
        name="deepseekr1_0528",
        think_in_prompt=False,
        output_separator="\n",
        notes=(
            "DeepSeek-R1-0528 (and R1-0528-Qwen3-8B): as deepseekr1, but the generation prompt does not open "
            "<think>\\n (the model writes it, so it is trained). No LLaMA-Factory name exists for it."
        ),
    ),
    DeepSeekTemplate(
        name="deepseek_v3_1",
        version="v3.1",
        tool_definitions=True,
        notes=(
            "DeepSeek-V3.1 (no LLaMA-Factory name): responses open </think> (non-thinking) or, when the response "
            "after the last user query has reasoning, <think>reasoning</think> (with enable_thinking=True an empty "
            "<think></think> where it has none); the generation prompt thinks only "
            "with enable_thinking=True (the official `thinking` kwarg; its default is non-thinking), and the "
            "exported Jinja reads both. Tool calls are non-thinking, so reasoning before a call is dropped, as "
            "officially. Tool definitions follow the model card's '## Tools' system-prompt text; the official "
            "chat template ignores `tools`."
        ),
    ),
    ChatTemplate(
        name="deepseekcoder",
        prefix="{bos}",
        system="{content}",
        user="### Instruction:\n{content}\n",
        assistant_prefix="### Response:\n",
        assistant_end="\n<|EOT|>",
        turn_sep="\n",
        stop_words=("<|EOT|>",),
        default_system=(
            "You are an AI programming assistant, utilizing the Deepseek Coder model, developed by Deepseek "
            "Company, and you only answer questions related to computer science. For politically sensitive "
            "questions, security and privacy issues, and other non-computer science questions, you will refuse "
            "to answer\n"
        ),
        notes="DeepSeek-Coder instruct (1.3b-33b); its default system prompt as the official template writes it.",
    ),
)
