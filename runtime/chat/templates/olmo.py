"""OLMo (Ai2): OLMo 2."""

from .base import ChatTemplate, register

register(
    ChatTemplate(
        name="olmo2",
        prefix="{bos}",
        system="<|system|>\n{content}\n",
        user="<|user|>\n{content}\n",
        assistant_prefix="<|assistant|>\n",
        turn_sep="\n",
        turn_sep_after_last=False,
        notes=(
            "OLMo 2 instruct (LLaMA-Factory's `olmo` is OLMo 1's format). The BOS and EOS are both "
            "<|endoftext|>; a newline follows every response but the last."
        ),
    ),
)
