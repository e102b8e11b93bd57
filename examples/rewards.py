"""Reward functions for examples/ppo.yaml and grpo: fn(prompts, completions, **columns) -> list[float].

`columns` holds the dataset's other columns; `answer` is the reference response of the row.
"""

import re


def correct_sum(prompts, completions, answer, **columns):
    """1 when the response ends with the right sum (the demo data's questions are 'What is A plus B?')."""
    scores = []
    for completion, reference in zip(completions, answer):
        expected = re.findall(r"\d+", reference)
        said = re.findall(r"\d+", completion)
        scores.append(1.0 if expected and said and said[-1] == expected[-1] else 0.0)
    return scores


def concise(prompts, completions, **columns):
    """A small penalty for rambling."""
    return [-0.01 * max(0, len(c.split()) - 8) for c in completions]
