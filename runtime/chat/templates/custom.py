"""A base for families whose markup the format strings of ``ChatTemplate`` cannot express.

DeepSeek's tool-call tokens, GLM-4.5's XML calls, gpt-oss's harmony channels and Kimi-K2's call
ids depend on the neighbouring turns (a response right after a tool result has no role header,
a call is addressed to a recipient, ...). Such a family subclasses ``CustomTemplate``: its
``turns`` renders the conversation through a ``Turns`` builder (prompt text is untrained,
response text is trained, as ``Rendered`` segments say) and ``jinja`` returns the same rendering
as a Hugging Face chat template, written by hand next to the Python so the two read alike (the
generic export in ``jinja.py`` assembles format strings and cannot express these families).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

from .base import (
    ChatTemplate,
    ConversationError,
    Rendered,
    Segment,
    SegmentKind,
    tool_calls_of,
    tool_results_of,
)


def split_reasoning(message: dict) -> tuple[str, str, list[dict]]:
    """(reasoning, text, calls) of an assistant or function message as ffc's converter writes it.

    Reasoning comes from ``reasoning_content`` or from a leading ``<think>...</think>`` block of
    the text (the converter's form); newlines around both are dropped, as the official templates do.
    """
    if message["role"] == "function":
        text, reasoning, calls = tool_calls_of(message.get("content"))
    else:
        text, reasoning, calls = message.get("content"), message.get("reasoning_content"), []
        if not isinstance(text, str):
            text = ChatTemplate._content(message)
    if "</think>" in text:
        head, _, text = text.partition("</think>")
        reasoning = reasoning or head.split("<think>")[-1]
        text = text.lstrip("\n")
    return (reasoning or "").strip("\n"), text, calls


class Turns:
    """Collects segments; ``turn`` counts the responses so far (each segment names its turn)."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self.turn = 0

    def prompt(self, text: str) -> None:
        self._add(text, "prompt")

    def response(self, text: str) -> None:
        self._add(text, "response")
        self.turn += 1

    def suffix(self, text: str) -> None:
        self._add(text, "suffix")

    def _add(self, text: str, kind: SegmentKind) -> None:
        if text:
            self.segments.append(Segment(text, kind, self.turn))


@dataclass(frozen=True)
class CustomTemplate(ChatTemplate):
    tool_definitions: bool = False  # the family has a format for the tools list

    def render(
        self,
        messages: list[dict],
        *,
        bos: Optional[str] = "",
        eos: Optional[str] = "",
        system: Optional[str] = None,
        tools: Optional[list | str] = None,
        add_generation_prompt: bool = False,
        enable_thinking: Optional[bool] = None,
        **_ignored,
    ) -> Rendered:
        messages, system = self._leading_system(messages, system, add_generation_prompt)
        messages = [  # several results of one turn's calls, joined as this family writes them
            {
                **m,
                "content": self.tool_result_separator.join(tool_results_of(m["content"])),
                "results": tool_results_of(m["content"]),  # for families that write each result apart
            }
            if m["role"] == "observation" and self.tool_result_separator is not None  # None: turns() splits them
            else m
            for m in messages
        ]
        out = Turns()
        self.turns(
            out,
            messages,
            bos=bos or "",
            eos=eos or "",
            system=system or "",
            tools=self._tool_list(tools),
            add_generation_prompt=add_generation_prompt,
            enable_thinking=enable_thinking,
        )
        return Rendered(out.segments)

    @property
    def renders_tools(self) -> bool:
        return self.tool_definitions

    def turns(self, out: Turns, messages: list[dict], **options) -> None:
        raise NotImplementedError

    def jinja(self, default_system: str) -> str:
        raise NotImplementedError

    def to_jinja(self, default_system: Optional[str] = None) -> str:
        return self.jinja(default_system or self.default_system or "")

    def _tool_list(self, tools) -> list[dict]:
        """Tool definitions as OpenAI-style ``{"type": "function", "function": {...}}`` entries."""
        if isinstance(tools, str) and tools:
            try:
                tools = json.loads(tools)
            except json.JSONDecodeError as exc:
                raise ConversationError(f"tools are not valid JSON: {exc}") from None
        tools = tools if isinstance(tools, list) else [tools] if tools else []
        if tools and not self.tool_definitions:
            raise ConversationError(f"template {self.name!r} has no format for tool definitions")
        return [t if isinstance(t, dict) and "function" in t else {"type": "function", "function": t} for t in tools]


# Jinja shared by the hand-written exports: system prompt and the messages to loop over, the index
# of the last user query, and a message's reasoning and text (the same split as ``split_reasoning``).
JINJA_HEAD = (
    "{%- set bos = bos_token or '' -%}{%- set eos = eos_token or '' -%}"
    "{%- if messages and messages[0]['role'] in ['system', 'developer'] -%}"
    "{%- set system = messages[0]['content'] -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set system = DEFAULT_SYSTEM -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- set ns = namespace(last_query=-1) -%}{%- for m in loop_messages -%}"
    "{%- if m['role'] == 'user' -%}{%- set ns.last_query = loop.index0 -%}{%- endif -%}{%- endfor -%}"
)
JINJA_SPLIT = (
    "{%- set text = message['content'] if message['content'] is string else '' -%}"
    "{%- set reasoning = message['reasoning_content'] if message['reasoning_content'] is string else '' -%}"
    "{%- if message['thinking'] is string and not reasoning -%}{%- set reasoning = message['thinking'] -%}{%- endif -%}"
    "{%- if '</think>' in text -%}"
    "{%- if not reasoning -%}{%- set reasoning = text.split('</think>')[0].split('<think>')[-1] -%}{%- endif -%}"
    "{%- set text = (text.split('</think>')[1:] | join('</think>')).lstrip('\\n') -%}"
    "{%- endif -%}"
    "{%- set reasoning = reasoning.strip('\\n') -%}"
    "{%- set calls = message['tool_calls'] if message['tool_calls'] is defined and message['tool_calls'] else [] -%}"
)


def jinja_head(default_system: str) -> str:
    return JINJA_HEAD.replace("DEFAULT_SYSTEM", json.dumps(default_system, ensure_ascii=False))
