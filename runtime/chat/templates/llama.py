"""Llama (Meta): Llama 2, Llama 3.x."""

from .base import ChatTemplate, register

_LLAMA3_HEADER = "<|start_header_id|>{role}<|end_header_id|>\n\n"


def _llama3(role: str) -> str:
    return _LLAMA3_HEADER.replace("{role}", role)


register(
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
)
