"""Phi (Microsoft): Phi-3/3.5, Phi-4."""

from .base import ChatTemplate, register

register(
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
)
