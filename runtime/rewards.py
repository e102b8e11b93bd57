"""Reward functions for ppo and grpo.

ffc's reward functions take text: ``fn(prompts: list[str], completions: list[str], **columns) -> list[float]``,
where ``columns`` holds the other dataset columns (``answer``: the dataset's reference response, if any).
The same file serves both stages; ``text_reward`` adapts a function to TRL's conversational calls.
"""

from __future__ import annotations

import functools


def _text(item) -> str:
    if isinstance(item, list):  # a conversation: the last message is what was generated or asked
        return item[-1]["content"] if item else ""
    return item


def text_reward(fn):
    """Wrap ``fn`` for TRL's GRPOTrainer, which passes prompts and completions as message lists."""

    @functools.wraps(fn)
    def wrapped(prompts, completions, **columns):
        return fn(prompts=[_text(p) for p in prompts], completions=[_text(c) for c in completions], **columns)

    return wrapped
