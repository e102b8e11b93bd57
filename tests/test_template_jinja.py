"""Each template's exported Jinja (saved as tokenizer.chat_template) renders exactly what ffc trains on."""

import json

import pytest

from ffc.runtime.chat.templates import TEMPLATES, NextRoleEndTemplate

from .test_template_parity import CONVERSATIONS, PROMPTS

TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
EXTRA = {
    "tool_use": (
        [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "function", "content": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})},
            {"role": "observation", "content": '{"temp": 21}'},
            {"role": "assistant", "content": "It is 21 degrees."},
        ],
        TOOLS,
    ),
    "reasoning": (
        [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"},
        ],
        None,
    ),
}


@pytest.fixture(scope="module")
def tokenizer(demo):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo / "tiny-model")


def _cases():
    for name, template in TEMPLATES.items():
        for conv, messages in {**CONVERSATIONS, **PROMPTS}.items():
            yield pytest.param(name, messages, None, conv in PROMPTS, id=f"{name}-{conv}")
        for conv, (messages, tools) in EXTRA.items():
            if tools and not template.renders_tools:
                continue
            yield pytest.param(name, messages, tools, False, id=f"{name}-{conv}")


@pytest.mark.parametrize("name,messages,tools,generation", list(_cases()))
def test_jinja_export_matches_python_rendering(tokenizer, name, messages, tools, generation):
    template = TEMPLATES[name]
    expected = template.render(
        messages, bos=tokenizer.bos_token, eos=tokenizer.eos_token, tools=tools, add_generation_prompt=generation
    ).text
    if isinstance(template, NextRoleEndTemplate) and not generation:  # glm4, chatglm3
        expected = expected.removesuffix(tokenizer.eos_token)  # the trained end marker is not part of the chat format
    hub_messages = [_as_openai(m) for m in messages]
    got = tokenizer.apply_chat_template(
        hub_messages, chat_template=template.to_jinja(), tools=tools, tokenize=False, add_generation_prompt=generation
    )
    assert got == expected


def _as_openai(message):
    if message["role"] == "function":
        call = json.loads(message["content"])
        return {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": call}]}
    if message["role"] == "observation":
        return {"role": "tool", "content": message["content"]}
    return message


def test_thinking_can_be_turned_off_at_generation(tokenizer):
    jinja = TEMPLATES["qwen3"].to_jinja()
    messages = [{"role": "user", "content": "hi"}]
    off = tokenizer.apply_chat_template(
        messages, chat_template=jinja, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert TEMPLATES["qwen3"].render(messages, add_generation_prompt=True, enable_thinking=False).text == off
