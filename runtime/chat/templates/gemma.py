"""Gemma (Google): Gemma 2/3, Gemma 3n, Gemma 4."""

from dataclasses import dataclass

from .base import ChatTemplate, register
from .jinja import response_jinja

_GEMMA3 = dict(
    prefix="{bos}",
    user="<start_of_turn>user\n{content}<end_of_turn>\n",
    assistant_prefix="<start_of_turn>model\n",
    assistant_end="<end_of_turn>",
    turn_sep="\n",
    system_in_first_user="{system}\n\n{content}",
    strip_messages=True,
    stop_words=("<end_of_turn>",),
)


@dataclass(frozen=True)
class ThoughtlessHistoryTemplate(ChatTemplate):
    """Gemma 4: a response keeps no reasoning (its template strips thoughts from every turn without a call).

    Reasoning reaches the template as a ``<think>`` block (ffc's converter) or as Gemma's own
    ``<|channel>...<channel|>`` thought channel; both are removed and the rest trimmed, as the
    official ``strip_thinking`` does.
    """

    def response_parts(self, content, message, index, count, last_query, enable_thinking):
        if "</think>" in content:
            content = content.partition("</think>")[2]
        parts = content.split("<channel|>")
        return "", "".join(part.split("<|channel>")[0] if "<|channel>" in part else part for part in parts).strip()


@response_jinja.register
def _(t: ThoughtlessHistoryTemplate) -> str:
    return (
        "{%- set body = content -%}"
        "{%- if '</think>' in body -%}{%- set body = body.split('</think>')[1:] | join('</think>') -%}{%- endif -%}"
        "{%- set kept = namespace(text='') -%}{%- for part in body.split('<channel|>') -%}"
        "{%- set kept.text = kept.text + (part.split('<|channel>')[0] if '<|channel>' in part else part) -%}"
        "{%- endfor -%}"
        "{%- set opening = '' -%}{%- set body = kept.text | trim -%}"
    )


register(
    ChatTemplate(
        name="gemma",
        **_GEMMA3,
        notes="Gemma 2/3: no system role; a system prompt opens the first user turn (as Gemma 3's template does).",
    ),
    ChatTemplate(
        name="gemma3n",
        **_GEMMA3,
        notes=(
            "Gemma 3n instruct: Gemma 3's text format (a system prompt opens the first user turn); images and "
            "audio are not supported by ffc yet."
        ),
    ),
    ThoughtlessHistoryTemplate(
        name="gemma4",
        prefix="{bos}",
        system="<|turn>system\n{content}<turn|>\n",
        user="<|turn>user\n{content}<turn|>\n",
        assistant_prefix="<|turn>model\n",
        assistant_end="<turn|>",
        turn_sep="\n",
        strip_messages=True,
        strip_system=True,
        stop_words=("<turn|>",),
        notes=(
            "Gemma 4 instruct. As its official template, responses keep no reasoning (reasoning_content and "
            "<think> blocks are removed, so they are not trained) and enable_thinking's <|think|> system marker "
            "is not rendered. Tool definitions, calls and results use Gemma 4's own serialisation, not in ffc yet: "
            "tool data is refused at build."
        ),
    ),
)
