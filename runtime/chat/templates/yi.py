"""Yi (01.AI)."""

from .base import ChatTemplate, register
from .generic import CHATML

register(
    ChatTemplate(name="yi", **CHATML, notes="Yi-6B/34B-Chat: ChatML."),
)

register(
    ChatTemplate(
        name="yi1_5",
        system="{content}",
        user="<|im_start|>user\n{content}<|im_end|>\n",
        assistant_prefix="<|im_start|>assistant\n",
        assistant_end="<|im_end|>",
        turn_sep="\n",
        stop_words=("<|im_end|>",),
        notes=(
            "Yi-1.5-Chat (no LLaMA-Factory name of its own; its yi template writes a ChatML system turn): the system "
            "prompt is written bare before the first turn, as the official template does."
        ),
    ),
)
