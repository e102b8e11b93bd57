"""Gemma (Google)."""

from .base import ChatTemplate, register

register(
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
)
