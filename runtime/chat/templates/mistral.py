"""Mistral AI: Mistral-7B-Instruct v0.1/v0.2, Mixtral."""

from .base import ChatTemplate, register

register(
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
)
