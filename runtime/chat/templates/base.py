"""The chat-template classes, their rendering, and the registry the family modules fill.

A template renders a conversation to text *and* says which characters are the
assistant's response, so the tokenizer can label trained tokens from character
offsets of the whole rendered string (see ``ffc.runtime.data.tokenize``).
Rendering matches the families' official Jinja templates character for
character (tests/test_template_parity.py checks that against ../shared); the
few places where an official template cannot express something are listed in
each template's ``notes``.

Formats may contain ``{content}``, ``{system}``, ``{bos}`` and ``{eos}``; they are
substituted once, so braces inside a message are never interpreted.

This module is pure Python: the compiler imports it without torch. The families
themselves live in the sibling modules (one per family group); the Jinja export in ``jinja``.
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


PLACEHOLDER = re.compile(r"\{(content|system|bos|eos)\}")


@functools.lru_cache(maxsize=None)
def _parts(fmt: str) -> tuple[tuple[bool, str], ...]:
    """A format split once into (is_placeholder, text) parts: rendering runs for every sample."""
    parts, last = [], 0
    for match in PLACEHOLDER.finditer(fmt):
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


def tool_results_of(content: str) -> list[str]:
    """The results in an ``observation`` message: several (one per call of the turn) are kept as
    ``{"tool_results": [...]}`` by ffc's converter; anything else is one result."""
    if content.startswith('{"tool_results": '):
        try:
            value = json.loads(content)
        except json.JSONDecodeError:
            return [content]
        results = value.get("tool_results") if isinstance(value, dict) and len(value) == 1 else None
        if isinstance(results, list) and all(isinstance(r, str) for r in results):
            return results
    return [content]


def tool_calls_of(content) -> tuple[str, str, list[dict]]:
    """(text beside the calls, reasoning, calls) of a ``function`` message.

    Its content is JSON: one call ``{"name", "arguments"}``, a list of calls (LLaMA-Factory's form),
    or ``{"content", "reasoning_content", "tool_calls"}`` when the assistant also wrote text or
    reasoning beside its calls (what ffc's converter writes for such OpenAI/sharegpt turns).
    Arguments stay as given: an object, or JSON text (OpenAI's form, checked to be valid JSON), which
    each family writes as its official template does (``arguments_text``).
    """
    try:
        value = json.loads(content) if isinstance(content, str) else content
    except json.JSONDecodeError as exc:
        raise ConversationError(f"a function call is not valid JSON ({exc.msg})") from None
    text = reasoning = ""
    if isinstance(value, dict) and "tool_calls" in value:
        text, reasoning, value = value.get("content") or "", value.get("reasoning_content") or "", value["tool_calls"]
    calls = value if isinstance(value, list) else [value]
    out = []
    for call in calls:
        call_id = call.get("id") if isinstance(call, dict) else None  # kept for families that write call ids
        call = call.get("function", call) if isinstance(call, dict) else call
        if not (isinstance(call, dict) and isinstance(call.get("name"), str)):
            raise ConversationError(f"a function call must be an object with a name, got {call!r}")
        args = call.get("arguments")
        if isinstance(args, str):
            arguments_object({"name": call["name"], "arguments": args})  # valid JSON text, or a clear error
        out.append({"name": call["name"], "arguments": {} if args is None else args})
        if isinstance(call_id, str) and call_id:
            out[-1]["id"] = call_id
    if not out:
        raise ConversationError("a function message holds no call")
    return text, reasoning, out


def arguments_text(arguments: Any, as_given: bool) -> str:
    """A call's arguments as its family's official template writes them.

    An object is JSON (transformers' ``tojson``). JSON text (OpenAI's form) is written as it is where the
    template writes a string as given (``as_given``: Qwen3, Gemma 4, DeepSeek), else through ``tojson``
    like any value, i.e. as a quoted JSON string (Qwen2.5, Llama, Mistral, gpt-oss, Kimi-K2). The Jinja
    export writes the same with ``jinja_arguments``.
    """
    return arguments if as_given and isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


def jinja_arguments(expression: str, as_given: bool) -> str:
    """``arguments_text`` as a Jinja expression over the arguments ``expression``."""
    if as_given:
        return f"({expression} if {expression} is string else ({expression} | tojson))"
    return f"({expression} | tojson)"


def arguments_object(call: dict) -> dict:
    """A call's arguments as an object, for families that write each argument by name (Qwen3.5, GLM-4.5):
    JSON text is decoded (their official templates fail on it)."""
    args = call["arguments"]
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError as exc:
            raise ConversationError(f"the arguments of {call['name']} are not valid JSON ({exc.msg})") from None
    if not isinstance(args, dict):
        raise ConversationError(f"the arguments of {call['name']} must be a JSON object, got {type(args).__name__}")
    return args


# -- reading the calls a model generated (serve.py): each family's ``parse_calls`` next to its rendering --------
_JSON = json.JSONDecoder()


def json_prefix(text: str) -> tuple[Any, str]:
    """(the JSON value ``text`` starts with, after blanks; the rest), or (None, text) when there is none."""
    stripped = text.lstrip()
    try:
        value, end = _JSON.raw_decode(stripped)
    except json.JSONDecodeError:
        return None, text
    return value, stripped[end:]


def parameter_types(tools: Optional[list], name: str) -> dict[str, str]:
    """The JSON-schema type of each parameter of tool ``name`` in a request's ``tools`` (OpenAI form)."""
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError:
            return {}
    for tool in tools if isinstance(tools, list) else []:
        function = tool.get("function", tool) if isinstance(tool, dict) else {}
        if isinstance(function, dict) and function.get("name") == name:
            properties = (function.get("parameters") or {}).get("properties") or {}
            return {k: v.get("type") for k, v in properties.items() if isinstance(v, dict)}
    return {}


def typed_argument(raw: str, schema_type: Optional[str]) -> Any:
    """An argument a family writes as bare text (Qwen3.5's <parameter>, GLM-4.5's <arg_value>): text where the
    tool's schema says string, else its JSON value when it is one (3, true, {...}), else the text."""
    if schema_type == "string":
        return raw
    value, rest = json_prefix(raw)
    return value if value is not None and not rest.strip() else {"True": True, "False": False}.get(raw, raw)


def call_json(value: Any, key: str = "arguments") -> Optional[dict]:
    """A call written as JSON ``{"name", <key>}`` -> ``{"name", "arguments"}``, or None when it is not one."""
    if isinstance(value, dict) and isinstance(value.get("name"), str) and set(value) <= {"name", key, "id"}:
        call = {"name": value["name"], "arguments": value.get(key, {})}
        if isinstance(value.get("id"), str):
            call["id"] = value["id"]
        return call
    return None


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    user: str = "{content}"
    assistant_end: str = "{eos}"  # closes a response; trained with it so the model learns to stop
    assistant_prefix: str = ""  # opens a response; also the generation prompt
    response_lead: str = ""  # trained text before the response that the generation prompt leaves out
    turn_sep: str = ""  # untrained text between a response and the next prompt
    turn_sep_after_last: bool = True  # False: no turn_sep after the final response (OLMo-2)
    prefix: str = ""  # once, at the very start
    system: str = "{content}"  # a system message of its own, right after prefix
    system_in_first_user: Optional[str] = None  # families without a system turn merge it: "{system}\n\n{content}"
    system_in_last_user: bool = False  # ... into the last user turn instead (Mistral Nemo's template)
    default_system: Optional[str] = None
    observation: Optional[str] = None  # a tool result; default: formatted like a user turn
    function: str = "{content}"  # one assistant tool call; {content} is its JSON {"name", "arguments"}
    call_separator: str = "\n"  # between the calls of one turn
    call_text_separator: str = "\n"  # between the text an assistant writes beside its calls and the calls
    arguments_as_given: bool = False  # arguments given as JSON text are written as they are (see arguments_text)
    tool_result_separator: str = "\n"  # between the results of one turn's calls, inside ``observation``
    tools: Optional[str] = None  # how tool definitions join the system prompt: "{system}...{content}"
    tools_without_system: Optional[str] = None  # the same when there is no system prompt (default: ``tools``)
    tool_separator: str = "\n"  # between tool definitions in ``tools``
    final_suffix: str = ""  # untrained, after a finished conversation (not with a generation prompt)
    strip_messages: bool = False  # official template trims message contents
    strip_system: bool = False
    strip_after_merge: bool = False  # llama2 trims the user text after merging the system into it
    add_bos_token: bool = False  # the text carries no BOS: tokenization prepends the tokenizer's
    stop_words: tuple[str, ...] = ()  # extra end-of-turn strings for generation
    notes: str = ""

    # -- rendering -------------------------------------------------------------------------------
    def _leading_system(self, messages: list[dict], system: Optional[str], add_generation_prompt: bool):
        """The turns after a leading system message, and the system prompt in force; checks the order."""
        messages = list(messages)
        if messages and messages[0]["role"] == "system":
            system = messages.pop(0)["content"]
        elif system is None:
            system = self.default_system
        self._check_order(messages, add_generation_prompt)
        return messages, system

    def render(
        self,
        messages: list[dict],
        *,
        bos: Optional[str] = "",
        eos: Optional[str] = "",
        system: Optional[str] = None,
        tools: Optional[list | str] = None,
        add_generation_prompt: bool = False,
        enable_thinking: Optional[bool] = True,
    ) -> Rendered:
        """Render ``messages`` (role/content dicts). ``system`` replaces the default system prompt."""
        messages, system = self._leading_system(messages, system, add_generation_prompt)
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
            fmt = self.tools if system or self.tools_without_system is None else self.tools_without_system
            system = fill(fmt, system=system, content=tool_text, **values)
        if system and self.system_in_first_user is None:
            add(fill(self.system, content=system, **values), "prompt", 0)

        turn = 0
        last_query = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        for index, message in enumerate(messages):
            calls: list[dict] = []
            if message["role"] == "function":
                content, reasoning, calls = tool_calls_of(message.get("content"))
                message = {"role": "function", "content": content, "reasoning_content": reasoning}
            else:
                content = self._content(message)
            if message["role"] == "observation":
                content = self.tool_result_separator.join(tool_results_of(content))
            if message["role"] in PROMPT_ROLES:
                merged_turn = last_query if self.system_in_last_user else 0
                merge = index == merged_turn and system and self.system_in_first_user is not None
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
                if calls:
                    body += (self.call_text_separator if content else "") + self.calls_text(calls, **values)
                add(fill(self.assistant_prefix, **values) + opening, "prompt", turn)
                add(self.response_lead + body + fill(self.assistant_end, **values), "response", turn)
                turn += 1
                if self.turn_sep_after_last or index < len(messages) - 1:
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

    def calls_text(self, calls: list[dict], **values) -> str:
        """The tool calls of one assistant turn, each in ``function``'s format."""
        return self.call_separator.join(
            fill(
                self.function,
                content=f'{{"name": {json.dumps(call["name"], ensure_ascii=False)}, '
                f'"arguments": {self.arguments_text(call)}}}',
                **values,
            )
            for call in calls
        )

    def arguments_text(self, call: dict) -> str:
        return arguments_text(call["arguments"], self.arguments_as_given)

    @property
    def renders_tools(self) -> bool:
        """The template has a format for tool definitions (and calls): the build's tool-data check and serve.py's
        ``tools`` ask this."""
        return self.tools is not None

    def parse_calls(self, text: str, tools: Optional[list] = None) -> tuple[str, list[dict]]:
        """(the text beside them, the calls [{"name", "arguments"(, "id")}]) that a model wrote in ``text``, its
        generated answer up to the stop string: the inverse of ``calls_text``. Families with markup of their own
        override it next to their rendering; a template without a tool format reads none (its calls are bare JSON,
        which a model answering in JSON also writes). ``tools``: the request's, for families that need the types."""
        if self.tools is None or "{content}" not in self.function:
            return text, []
        before, _, after = self.function.partition("{content}")
        pattern = re.escape(before) + r"(.*?)" + re.escape(after)
        calls = []
        for match in re.finditer(pattern, text, flags=re.S):
            value, rest = json_prefix(match.group(1))
            call = call_json(value) if not rest.strip() else None
            if call is None:
                return text, []  # not a call after all: the answer is text
            calls.append(call)
        return (re.sub(pattern, "", text, flags=re.S).strip(), calls) if calls else (text, [])

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
        """The same rendering as a Jinja chat template (for ``tokenizer.chat_template``); see ``.jinja``."""
        from .jinja import export

        return export(self, default_system)

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

    Which responses keep their reasoning follows the official template (``reasoning_turns:
    "official"``: those after the last user query; earlier ones drop it) or, as LLaMA-Factory
    trains, every response (``"all"``; the text then differs from the official template's on
    multi-turn data). ``enable_thinking`` as LLaMA-Factory reads it: True trains the reasoning
    and, where a response has none, an empty think block; False drops all reasoning and puts the
    empty block in the prompt (untrained); None (unset) lets the data decide: reasoning present is
    trained, an empty block is prompt.
    """

    think_open: str = "<think>\n"
    think_close: str = "\n</think>\n\n"
    reasoning_turns: Literal["official", "all"] = "official"

    def response_parts(self, content, message, index, count, last_query, enable_thinking):
        reasoning = message.get("reasoning_content")
        if "</think>" in content:
            head, _, content = content.partition("</think>")
            if reasoning is None:
                reasoning = head.rstrip("\n").split("<think>")[-1].lstrip("\n")
            content = content.lstrip("\n")
        reasoning = "" if enable_thinking is False else (reasoning or "").strip("\n")
        if self.reasoning_turns != "all" and (index <= last_query or not (index == count - 1 or reasoning)):
            return "", content
        if reasoning:
            return "", self.think_open + reasoning + self.think_close + content
        empty = self.think_open.rstrip("\n") + "\n" + self.think_close
        return ("", empty + content) if enable_thinking is True else (empty, content)

    def generation_opening(self, enable_thinking: Optional[bool]) -> str:
        return self.think_open + self.think_close if enable_thinking is False else ""


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


TEMPLATES: dict[str, ChatTemplate] = {}


def register(*templates: ChatTemplate) -> None:
    """Add family entries to ``TEMPLATES`` (each family module calls this once at import)."""
    for template in templates:
        if template.name in TEMPLATES:
            raise ValueError(f"chat template {template.name!r} is registered twice")
        TEMPLATES[template.name] = template


def get_template(name: str) -> ChatTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise KeyError(f"unknown chat template {name!r}{suggest(name, TEMPLATES)}") from None
