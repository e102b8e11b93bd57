"""enable_thinking true / false / unset as LLaMA-Factory reads them; which turns keep their reasoning."""

import dataclasses

import pytest

from ffc.runtime.chat.templates import TEMPLATES

QWEN3 = TEMPLATES["qwen3"]
EMPTY = "<think>\n\n</think>\n\n"
TWO_TURNS = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!", "reasoning_content": "Greet back."},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
]


def _last_turn(rendered):
    """(prompt text, trained text) of the second turn."""
    turn = [s for s in rendered.segments if s.turn == 1]
    return "".join(s.text for s in turn if s.kind == "prompt"), "".join(s.text for s in turn if s.kind == "response")


PROMPT = "\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize(
    "mode,expected",
    [
        (True, (PROMPT, EMPTY + "4<|im_end|>")),
        (None, (PROMPT + EMPTY, "4<|im_end|>")),
        (False, (PROMPT + EMPTY, "4<|im_end|>")),
    ],
)
def test_a_response_without_reasoning(mode, expected):
    """True trains the empty think block; unset and False leave it in the prompt."""
    assert _last_turn(QWEN3.render(TWO_TURNS, enable_thinking=mode)) == expected


def test_false_drops_reasoning_and_unset_keeps_it():
    messages = TWO_TURNS[:1] + [{"role": "assistant", "content": "Hello!", "reasoning_content": "Greet back."}]
    kept = QWEN3.render(messages, enable_thinking=None).text
    assert "<think>\nGreet back.\n</think>\n\nHello!" in kept
    assert "Greet back." not in QWEN3.render(messages, enable_thinking=False).text


def test_reasoning_in_every_turn_is_an_option():
    official = QWEN3.render(TWO_TURNS).text
    assert "Greet back." not in official  # earlier turns drop their reasoning, as the official template does
    every = dataclasses.replace(QWEN3, reasoning_turns="all")
    text = every.render(TWO_TURNS).text
    assert "<|im_start|>assistant\n<think>\nGreet back.\n</think>\n\nHello!<|im_end|>" in text
    assert every.render(TWO_TURNS[:3], add_generation_prompt=True).text in text  # the saved Jinja agrees below
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    jinja = ImmutableSandboxedEnvironment().from_string(every.to_jinja()).render(messages=TWO_TURNS)
    assert jinja == text


def test_thinking_2507_opens_the_block_in_the_prompt():
    """Qwen3 thinking-2507's generation prompt writes <think>\\n, so the model is never trained to write it."""
    template = TEMPLATES["qwen3_thinking"]
    messages = TWO_TURNS[:3] + [{"role": "assistant", "content": "4", "reasoning_content": "Add."}]
    prompt, trained = _last_turn(template.render(messages))
    assert prompt.endswith("<|im_start|>assistant\n<think>\n") and trained == "Add.\n</think>\n\n4<|im_end|>"
    generation = template.render(TWO_TURNS[:3], add_generation_prompt=True, enable_thinking=False).text
    assert generation.endswith("<|im_start|>assistant\n<think>\n")
