"""Llama (Meta): Llama 2, Llama 3.x, Llama 4."""

from .base import ChatTemplate, register

_LLAMA3_HEADER = "<|start_header_id|>{role}<|end_header_id|>\n\n"


def _llama3(role: str) -> str:
    return _LLAMA3_HEADER.replace("{role}", role)


def _llama4(role: str) -> str:
    return f"<|header_start|>{role}<|header_end|>\n\n"


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
    ChatTemplate(
        name="llama4",
        prefix="{bos}",
        system=_llama4("system") + "{content}<|eot|>",
        user=_llama4("user") + "{content}<|eot|>",
        observation=_llama4("ipython") + "{content}<|eot|>",
        assistant_prefix=_llama4("assistant"),
        assistant_end="<|eot|>",
        strip_system=True,
        stop_words=("<|eot|>", "<|eom|>"),
        notes=(
            "Llama 4 instruct (Scout, Maverick). The official template trims only the system prompt. Tool calls "
            "are not rendered yet: Llama 4 puts the tool list into the first user message and wraps calls in "
            "<|python_start|><|python_end|>, which ffc's tool formats cannot express."
        ),
    ),
)
