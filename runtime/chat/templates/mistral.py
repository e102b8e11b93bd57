"""Mistral AI: Mistral-7B-Instruct v0.1/v0.2/v0.3, Mixtral, Mistral Nemo, Mistral Small 3.x."""

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
    ChatTemplate(
        name="mistral_v3",
        prefix="{bos}",
        user=" [INST] {content} [/INST]",
        response_lead=" ",
        assistant_end=" {eos}",
        system_in_first_user="{system}\n\n{content}",
        notes=(
            "Mistral-7B-Instruct v0.3 (LLaMA-Factory's `mistral`; ffc's `mistral` keeps v0.1/v0.2's spacing). Its "
            "official template silently drops a system message; ffc puts it at the start of the first [INST] block. "
            "Tool calls ([AVAILABLE_TOOLS], [TOOL_CALLS] with call ids) are not rendered yet."
        ),
    ),
    ChatTemplate(
        name="ministral",
        prefix="{bos}",
        user="[INST]{content}[/INST]",
        system_in_first_user="{system}\n\n{content}",
        system_in_last_user=True,
        notes=(
            "Mistral Nemo (2407) and Ministral-8B (2410), tokenizer v3 tekken. A system prompt opens the last [INST] "
            "block, where the official template puts it at generation (LLaMA-Factory's `ministral` puts it into the "
            "first), so earlier turns of a multi-turn sample are trained without it; the official template drops it "
            "from a conversation that ends with a response, ffc keeps it. Tool calls ([AVAILABLE_TOOLS], "
            "[TOOL_CALLS] with 9-character call ids) are not rendered yet."
        ),
    ),
    ChatTemplate(
        name="mistral_small",
        prefix="{bos}",
        system="[SYSTEM_PROMPT]{content}[/SYSTEM_PROMPT]",
        user="[INST]{content}[/INST]",
        notes=(
            "Mistral Small 3 (2501) and 3.1/3.2 (2503, 2506), tokenizer v7 tekken. 3.1/3.2's template adds a long "
            "default system prompt holding the current date when none is given; ffc adds none (a date would make "
            "the training text depend on the day it was built). Tool calls ([TOOL_CALLS]name[CALL_ID]id[ARGS]) "
            "are not rendered yet."
        ),
    ),
)
