"""Chat templates as data: each model family is a handful of format strings.

A template renders a conversation to text *and* says which characters are the
assistant's response, so the tokenizer can label trained tokens from character
offsets of the whole rendered string (see ``ffc.runtime.data.tokenize``).
Rendering matches the families' official Jinja templates character for
character (tests/test_template_parity.py checks that against ../shared); the
few places where an official template cannot express something are listed in
each template's ``notes``.

Formats may contain ``{content}``, ``{system}``, ``{bos}`` and ``{eos}``; they are
substituted once, so braces inside a message are never interpreted.

This module is pure Python: the compiler imports it without torch.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Literal, Optional

PROMPT_ROLES = ("user", "observation")
RESPONSE_ROLES = ("assistant", "function")
SegmentKind = Literal["prompt", "response", "suffix"]


class ConversationError(ValueError):
    """A conversation the template cannot render (roles out of order, empty, ...)."""


@dataclass(frozen=True)
class Segment:
    text: str
    kind: SegmentKind  # response: the assistant's output, trained by default
    turn: int  # index of the assistant turn this segment leads to or belongs to


@dataclass
class Rendered:
    segments: list[Segment]

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)

    @property
    def num_turns(self) -> int:
        return 1 + max((s.turn for s in self.segments if s.kind == "response"), default=-1)


_PLACEHOLDER = re.compile(r"\{(content|system|bos|eos)\}")


@functools.lru_cache(maxsize=None)
def _parts(fmt: str) -> tuple[tuple[bool, str], ...]:
    """A format split once into (is_placeholder, text) parts: rendering runs for every sample."""
    parts, last = [], 0
    for match in _PLACEHOLDER.finditer(fmt):
        parts += [(False, fmt[last : match.start()]), (True, match.group(1))]
        last = match.end()
    parts.append((False, fmt[last:]))
    return tuple(part for part in parts if part[0] or part[1])


def fill(fmt: str, **values: Optional[str]) -> str:
    """Substitute placeholders in one pass, so text inside values is never re-expanded."""
    return "".join((values.get(text) or "") if is_key else text for is_key, text in _parts(fmt))


def suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(known))}"


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    user: str = "{content}"
    assistant_end: str = "{eos}"  # closes a response; trained with it so the model learns to stop
    assistant_prefix: str = ""  # opens a response; also the generation prompt
    response_lead: str = ""  # trained text before the response that the generation prompt leaves out
    turn_sep: str = ""  # untrained text between a response and the next prompt
    prefix: str = ""  # once, at the very start
    system: str = "{content}"  # a system message of its own, right after prefix
    system_in_first_user: Optional[str] = None  # families without a system turn merge it: "{system}\n\n{content}"
    default_system: Optional[str] = None
    observation: Optional[str] = None  # a tool result; default: formatted like a user turn
    function: str = "{content}"  # an assistant tool call (JSON {"name", "arguments"})
    tools: Optional[str] = None  # how tool definitions join the system prompt: "{system}...{content}"
    tool_separator: str = "\n"  # between tool definitions in ``tools``
    final_suffix: str = ""  # untrained, after a finished conversation (not with a generation prompt)
    strip_messages: bool = False  # official template trims message contents
    strip_system: bool = False
    strip_after_merge: bool = False  # llama2 trims the user text after merging the system into it
    add_bos_token: bool = False  # the text carries no BOS: tokenization prepends the tokenizer's
    stop_words: tuple[str, ...] = ()  # extra end-of-turn strings for generation
    notes: str = ""

    # -- rendering -------------------------------------------------------------------------------
    def render(
        self,
        messages: list[dict],
        *,
        bos: Optional[str] = "",
        eos: Optional[str] = "",
        system: Optional[str] = None,
        tools: Optional[list | str] = None,
        add_generation_prompt: bool = False,
        enable_thinking: bool = True,
    ) -> Rendered:
        """Render ``messages`` (role/content dicts). ``system`` replaces the default system prompt."""
        messages = list(messages)
        if messages and messages[0]["role"] == "system":
            system = messages.pop(0)["content"]
        elif system is None:
            system = self.default_system
        self._check_order(messages, add_generation_prompt)
        out: list[Segment] = []
        values = {"bos": bos, "eos": eos}

        def add(text: str, kind: SegmentKind, turn: int) -> None:
            if text:
                out.append(Segment(text, kind, turn))

        add(fill(self.prefix, **values), "prompt", 0)
        if self.strip_system and system:
            system = system.strip()
        tool_text = self._tools_text(tools)
        if tool_text is not None:
            system = fill(self.tools, system=system, content=tool_text, **values)
        if system and self.system_in_first_user is None:
            add(fill(self.system, content=system, **values), "prompt", 0)

        turn = 0
        last_query = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        for index, message in enumerate(messages):
            content = self._content(message)
            if message["role"] in PROMPT_ROLES:
                merge = index == 0 and system and self.system_in_first_user is not None
                if self.strip_messages and not (merge and self.strip_after_merge):
                    content = content.strip()
                if merge:
                    content = fill(self.system_in_first_user, system=system, content=content, **values)
                if self.strip_after_merge:
                    content = content.strip()
                fmt = self.user if message["role"] == "user" or self.observation is None else self.observation
                add(fill(fmt, content=content, **values), "prompt", turn)
            else:
                if self.strip_messages or self.strip_after_merge:
                    content = content.strip()
                opening, body = self.response_parts(content, message, index, len(messages), last_query, enable_thinking)
                if message["role"] == "function":
                    body = fill(self.function, content=body, **values)
                add(fill(self.assistant_prefix, **values) + opening, "prompt", turn)
                add(self.response_lead + body + fill(self.assistant_end, **values), "response", turn)
                turn += 1
                add(fill(self.turn_sep, **values), "prompt", turn)
        if add_generation_prompt:
            add(fill(self.assistant_prefix, **values) + self.generation_opening(enable_thinking), "prompt", turn)
        else:
            add(fill(self.final_suffix, **values), "suffix", turn)
        return Rendered(out)

    def response_parts(self, content, message, index, count, last_query, enable_thinking) -> tuple[str, str]:
        """(untrained opening, trained body) of a response; reasoning templates override this."""
        return "", content

    def generation_opening(self, enable_thinking: bool) -> str:
        return ""

    @staticmethod
    def _content(message: dict) -> str:
        content = message.get("content")
        if not isinstance(content, str):
            raise ConversationError(f"{message.get('role')} message content must be text, got {type(content).__name__}")
        return content

    @staticmethod
    def _check_order(messages: list[dict], add_generation_prompt: bool) -> None:
        if not messages:
            raise ConversationError("the conversation has no messages besides the system prompt")
        for index, message in enumerate(messages):
            role = message.get("role")
            expected = PROMPT_ROLES if index % 2 == 0 else RESPONSE_ROLES
            if role not in expected:
                raise ConversationError(
                    f"message {index + 1} has role {role!r} where {' or '.join(expected)} was expected: "
                    "turns must alternate user/observation and assistant/function"
                )
        if not add_generation_prompt and messages[-1]["role"] not in RESPONSE_ROLES:
            raise ConversationError("the conversation ends without an assistant response")

    def _tools_text(self, tools) -> Optional[str]:
        if not tools:
            return None
        if isinstance(tools, str):
            try:
                tools = json.loads(tools)
            except json.JSONDecodeError as exc:
                raise ConversationError(f"tools are not valid JSON: {exc}") from None
        if not isinstance(tools, list):
            tools = [tools]
        if not tools:
            return None
        if self.tools is None:
            raise ConversationError(f"template {self.name!r} has no format for tool definitions")
        # Hub templates expect OpenAI-style {"type": "function", "function": {...}} entries.
        wrapped = [t if isinstance(t, dict) and "function" in t else {"type": "function", "function": t} for t in tools]
        return self.tool_separator.join(json.dumps(t, ensure_ascii=False) for t in wrapped)

    # -- export as a Hugging Face chat template ---------------------------------------------------
    def to_jinja(self, default_system: Optional[str] = None) -> str:
        """The same rendering as a Jinja chat template (for ``tokenizer.chat_template``), so a saved
        model renders conversations exactly as it was trained in any tool that reads the template.
        Accepts ffc's roles and the OpenAI-style ones (``tool`` results, assistant ``tool_calls``)."""
        merge = self.system_in_first_user is not None
        parts = [
            "{%- set bos = bos_token or '' -%}{%- set eos = eos_token or '' -%}",
            "{%- if messages and messages[0]['role'] == 'system' -%}"
            "{%- set system = messages[0]['content'] -%}{%- set loop_messages = messages[1:] -%}"
            "{%- else -%}"
            f"{{%- set system = {_jinja_str(default_system or self.default_system or '')} -%}}"
            "{%- set loop_messages = messages -%}"
            "{%- endif -%}",
            "{%- set system = system | trim -%}" if self.strip_system else "",
            "{%- set ns = namespace(last_query=-1) -%}{%- for m in loop_messages -%}"
            "{%- if m['role'] == 'user' -%}{%- set ns.last_query = loop.index0 -%}{%- endif -%}{%- endfor -%}",
            f"{{{{- {_jinja_expr(self.prefix)} -}}}}",
        ]
        if self.tools is not None:
            parts.append(
                "{%- if tools -%}{%- set tool_lines = namespace(text='') -%}{%- for tool in tools -%}"
                "{%- set entry = tool if tool['function'] is defined else {'type': 'function', 'function': tool} -%}"
                f"{{%- set tool_lines.text = tool_lines.text + ({_jinja_str(self.tool_separator)} if not loop.first else '')"
                " + (entry | tojson) -%}{%- endfor -%}"
                f"{{%- set system = {_jinja_expr(self.tools, content='tool_lines.text')} -%}}{{%- endif -%}}"
            )
        if not merge:
            parts.append(f"{{%- if system -%}}{{{{- {_jinja_expr(self.system, content='system')} -}}}}{{%- endif -%}}")
        strip_user = "| trim" if self.strip_messages else ""
        user_expr = _jinja_expr(self.user, content="content")
        observation_expr = _jinja_expr(self.observation or self.user, content="content")
        merged = ""
        if merge:
            pre = "content" if self.strip_after_merge else f"(message['content'] {strip_user})"
            merged = (
                "{%- if loop.first and system -%}"
                f"{{%- set content = {_jinja_expr(self.system_in_first_user, system='system', content=pre)} -%}}"
                "{%- endif -%}"
            )
        after_merge = "{%- set content = content | trim -%}" if self.strip_after_merge else ""
        strip_response = "| trim" if (self.strip_messages or self.strip_after_merge) else ""
        parts += [
            "{%- for message in loop_messages -%}",
            "{%- if message['role'] in ['user', 'observation', 'tool'] -%}",
            f"{{%- set content = message['content'] {'' if self.strip_after_merge else strip_user} -%}}",
            merged,
            after_merge,
            "{%- if message['role'] == 'user' -%}"
            f"{{{{- {user_expr} -}}}}"
            f"{{%- else -%}}{{{{- {observation_expr} -}}}}{{%- endif -%}}",
            "{%- else -%}",
            "{%- if message['tool_calls'] is defined and message['tool_calls'] -%}",
            "{%- set call = message['tool_calls'][0]['function'] if message['tool_calls'][0]['function'] is defined "
            "else message['tool_calls'][0] -%}",
            f"{{%- set body = {_jinja_expr(self.function, content=_CALL_JSON)} -%}}",
            "{%- set opening = '' -%}",
            "{%- elif message['role'] == 'function' -%}",
            f"{{%- set body = {_jinja_expr(self.function, content=_MESSAGE_CONTENT)} -%}}",
            "{%- set opening = '' -%}",
            "{%- else -%}",
            f"{{%- set content = message['content'] {strip_response} -%}}",
            self._jinja_response(),
            "{%- endif -%}",
            f"{{{{- {_jinja_expr(self.assistant_prefix)} + opening + {_jinja_str(self.response_lead)} + body + "
            f"{_jinja_expr(self.assistant_end)} + {_jinja_expr(self.turn_sep)} -}}}}",
            "{%- endif -%}",
            "{%- endfor -%}",
            f"{{%- if add_generation_prompt -%}}{{{{- {_jinja_expr(self.assistant_prefix)} + {self._jinja_generation_opening()} -}}}}"
            f"{{%- else -%}}{{{{- {_jinja_expr(self.final_suffix)} -}}}}{{%- endif -%}}",
        ]
        return "".join(part for part in parts if part)

    def _jinja_response(self) -> str:
        """Jinja that sets ``opening`` (untrained) and ``body`` from ``content``; see ``response_parts``."""
        return "{%- set opening = '' -%}{%- set body = content -%}"

    def _jinja_generation_opening(self) -> str:
        return "''"

    # -- description ---------------------------------------------------------------------------
    def stop_strings(self, eos: Optional[str]) -> list[str]:
        """Strings that end a response at generation time."""
        words = [w for w in (fill(self.assistant_end, eos=eos).strip(),) if w]
        return list(dict.fromkeys(words + list(self.stop_words) + ([eos] if eos else [])))

    def definition(self) -> dict[str, Any]:
        """The fields that differ from the defaults: what a generated chat_template.py spells out."""
        defaults = {f.name: f.default for f in fields(ChatTemplate)}
        return {k: v for k, v in asdict(self).items() if k == "name" or v != defaults.get(k)}


@dataclass(frozen=True)
class ReasoningTemplate(ChatTemplate):
    """Qwen3-style: a response after the last user query carries ``<think>...</think>``.

    Earlier responses drop their reasoning, as the official template does. The
    reasoning is trained when ``enable_thinking``; an empty think block belongs to
    the prompt (it is what the model is given when thinking is turned off).
    """

    think_open: str = "<think>\n"
    think_close: str = "\n</think>\n\n"

    def response_parts(self, content, message, index, count, last_query, enable_thinking):
        reasoning = message.get("reasoning_content")
        if "</think>" in content:
            head, _, content = content.partition("</think>")
            if reasoning is None:
                reasoning = head.rstrip("\n").split("<think>")[-1].lstrip("\n")
            content = content.lstrip("\n")
        reasoning = (reasoning or "").strip("\n")
        if index <= last_query or not (index == count - 1 or reasoning):
            return "", content
        if reasoning and enable_thinking:
            return "", self.think_open + reasoning + self.think_close + content
        return self.think_open.rstrip("\n") + "\n" + self.think_close, content

    def generation_opening(self, enable_thinking: bool) -> str:
        return "" if enable_thinking else self.think_open + self.think_close

    def _jinja_response(self) -> str:
        think_open, think_close = _jinja_str(self.think_open), _jinja_str(self.think_close)
        empty = _jinja_str(self.think_open.rstrip("\n") + "\n" + self.think_close)
        return (
            "{%- set reasoning = message['reasoning_content'] if message['reasoning_content'] is string else none -%}"
            "{%- if '</think>' in content -%}"
            "{%- if reasoning is none -%}"
            "{%- set reasoning = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') -%}"
            "{%- endif -%}"
            "{%- set content = content.split('</think>')[1:] | join('</think>') -%}"
            "{%- set content = content.lstrip('\\n') -%}"
            "{%- endif -%}"
            "{%- set reasoning = (reasoning or '').strip('\\n') -%}"
            "{%- set thinking = enable_thinking is not defined or enable_thinking -%}"
            "{%- if loop.index0 <= ns.last_query or not (loop.last or reasoning) -%}"
            "{%- set opening = '' -%}{%- set body = content -%}"
            "{%- elif reasoning and thinking -%}"
            f"{{%- set opening = '' -%}}{{%- set body = {think_open} + reasoning + {think_close} + content -%}}"
            "{%- else -%}"
            f"{{%- set opening = {empty} -%}}{{%- set body = content -%}}"
            "{%- endif -%}"
        )

    def _jinja_generation_opening(self) -> str:
        closed = _jinja_str(self.think_open + self.think_close)
        return f"({closed} if enable_thinking is defined and enable_thinking is false else '')"


@dataclass(frozen=True)
class NextRoleEndTemplate(ChatTemplate):
    """GLM-4: a response has no end token; the model stops by emitting the next role tag.

    The ``<|user|>`` that opens the following turn is therefore trained as the end of
    the response before it, and a finished conversation ends with the EOS token
    (the official template renders nothing there, so a model could not learn to stop).
    """

    role_end: str = "<|user|>"

    def render(self, messages, **kwargs) -> Rendered:
        rendered = super().render(messages, **kwargs)
        out: list[Segment] = []
        for seg in rendered.segments:
            if seg.kind == "prompt" and out and out[-1].kind == "response" and seg.text.startswith(self.role_end):
                out[-1] = Segment(out[-1].text + self.role_end, "response", out[-1].turn)
                seg = Segment(seg.text[len(self.role_end) :], "prompt", seg.turn)
                if not seg.text:
                    continue
            out.append(seg)
        if not kwargs.get("add_generation_prompt") and out and out[-1].kind == "response":
            eos = kwargs.get("eos") or ""
            out[-1] = Segment(out[-1].text + eos, "response", out[-1].turn)
        return Rendered(out)


_CALL_JSON = "({'name': call['name'], 'arguments': call['arguments']} | tojson)"
_MESSAGE_CONTENT = "message['content']"


def _jinja_str(text: str) -> str:
    """A Jinja string literal (JSON escapes are valid Jinja escapes)."""
    return json.dumps(text, ensure_ascii=False)


def _jinja_expr(fmt: str, content: str = "''", system: str = "system") -> str:
    """A format string as a Jinja expression: literal parts and the placeholders' variables."""
    names = {"content": content, "system": system, "bos": "bos", "eos": "eos"}
    pieces, last = [], 0
    for match in _PLACEHOLDER.finditer(fmt):
        if match.start() > last:
            pieces.append(_jinja_str(fmt[last : match.start()]))
        pieces.append(f"({names[match.group(1)]})")
        last = match.end()
    if last < len(fmt):
        pieces.append(_jinja_str(fmt[last:]))
    return " + ".join(pieces) if pieces else "''"


_CHATML = dict(
    system="<|im_start|>system\n{content}<|im_end|>\n",
    user="<|im_start|>user\n{content}<|im_end|>\n",
    assistant_prefix="<|im_start|>assistant\n",
    assistant_end="<|im_end|>",
    turn_sep="\n",
    stop_words=("<|im_end|>",),
)
_QWEN_TOOLS = dict(
    observation="<|im_start|>user\n<tool_response>\n{content}\n</tool_response><|im_end|>\n",
    function="<tool_call>\n{content}\n</tool_call>",
    tools=(
        "{system}\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{content}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
        "</tool_call>"
    ),
)
_LLAMA3_HEADER = "<|start_header_id|>{role}<|end_header_id|>\n\n"


def _llama3(role: str) -> str:
    return _LLAMA3_HEADER.replace("{role}", role)


_TEMPLATE_LIST: list[ChatTemplate] = [
    ChatTemplate(
        name="empty",
        add_bos_token=True,
        notes="No markup: the prompt and response texts follow each other; the response ends with EOS.",
    ),
    ChatTemplate(
        name="default",
        system="System: {content}\n",
        user="Human: {content}\nAssistant:",
        turn_sep="\n",
        add_bos_token=True,
        notes="LLaMA-Factory's model-agnostic default format.",
    ),
    ChatTemplate(
        name="alpaca",
        user="### Instruction:\n{content}\n\n### Response:\n",
        turn_sep="\n\n",
        default_system=(
            "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
        ),
        add_bos_token=True,
        notes="Stanford Alpaca's prompt format.",
    ),
    ChatTemplate(
        name="vicuna",
        system="{content} ",
        user="USER: {content} ",
        assistant_prefix="ASSISTANT:",
        response_lead=" ",
        default_system=(
            "A chat between a curious user and an artificial intelligence assistant. "
            "The assistant gives helpful, detailed, and polite answers to the user's questions."
        ),
        add_bos_token=True,
        notes="FastChat vicuna_v1.1; FastChat's tokenizer call adds BOS, so tokenization does too.",
    ),
    ChatTemplate(name="chatml", **_CHATML, notes="Plain ChatML, no default system prompt."),
    ChatTemplate(
        name="qwen",
        **_CHATML,
        **_QWEN_TOOLS,
        default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
        notes="Qwen2/2.5 instruct. Tool calls render as <tool_call> blocks; observations as <tool_response>.",
    ),
    ReasoningTemplate(
        name="qwen3",
        **{**_CHATML, **_QWEN_TOOLS, "tools": _QWEN_TOOLS["tools"].replace("{system}\n\n# Tools", "{system}# Tools")},
        notes=(
            "Qwen3: the response after the last user query carries a <think> block. "
            "With tools, the official template separates the system prompt from '# Tools' with a blank line "
            "that ffc folds into the system text."
        ),
    ),
    ChatTemplate(name="yi", **_CHATML, notes="Yi-6B/34B-Chat: ChatML."),
    ChatTemplate(name="internlm2", prefix="{bos}", **_CHATML, notes="InternLM2-chat: ChatML after BOS."),
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
    ChatTemplate(
        name="gemma",
        prefix="{bos}",
        user="<start_of_turn>user\n{content}<end_of_turn>\n",
        assistant_prefix="<start_of_turn>model\n",
        assistant_end="<end_of_turn>",
        turn_sep="\n",
        system_in_first_user="{system}\n\n{content}",
        strip_messages=True,
        stop_words=("<end_of_turn>",),
        notes="Gemma 2/3: no system role; a system prompt opens the first user turn (as Gemma 3's template does).",
    ),
    ChatTemplate(
        name="phi",
        system="<|system|>\n{content}<|end|>\n",
        user="<|user|>\n{content}<|end|>\n",
        assistant_prefix="<|assistant|>\n",
        assistant_end="<|end|>",
        turn_sep="\n",
        final_suffix="{eos}",
        stop_words=("<|end|>",),
        notes="Phi-3/3.5 instruct.",
    ),
    ChatTemplate(
        name="phi4",
        system="<|im_start|>system<|im_sep|>{content}<|im_end|>",
        user="<|im_start|>user<|im_sep|>{content}<|im_end|>",
        assistant_prefix="<|im_start|>assistant<|im_sep|>",
        assistant_end="<|im_end|>",
        stop_words=("<|im_end|>",),
        notes="Phi-4.",
    ),
    ChatTemplate(
        name="deepseek3",
        prefix="{bos}",
        user="<｜User｜>{content}",
        assistant_prefix="<｜Assistant｜>",
        assistant_end="<｜end▁of▁sentence｜>",
        notes="DeepSeek-V3 (R1 differs: its generation prompt opens a <think> block).",
    ),
    NextRoleEndTemplate(
        name="glm4",
        prefix="[gMASK]<sop>",
        system="<|system|>\n{content}",
        user="<|user|>\n{content}",
        observation="<|observation|>\n{content}",
        assistant_prefix="<|assistant|>",
        response_lead="\n",
        assistant_end="",
        stop_words=("<|user|>", "<|observation|>"),
        notes=(
            "GLM-4-chat: responses end where the next <|user|> begins, so that tag is trained; a finished "
            "conversation gets a trained EOS that the official template does not render."
        ),
    ),
    ChatTemplate(
        name="zephyr",
        system="<|system|>\n{content}{eos}\n",
        user="<|user|>\n{content}{eos}\n",
        assistant_prefix="<|assistant|>\n",
        turn_sep="\n",
        notes="Zephyr and TinyLlama-chat.",
    ),
]

TEMPLATES: dict[str, ChatTemplate] = {t.name: t for t in _TEMPLATE_LIST}


def get_template(name: str) -> ChatTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise KeyError(f"unknown chat template {name!r}{suggest(name, TEMPLATES)}") from None
