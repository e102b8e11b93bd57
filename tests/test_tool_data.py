"""Tool calls and reasoning in sharegpt/openai rows: several calls per turn, text and reasoning beside them."""

import json

import pytest

from ffc.runtime.chat.templates import TEMPLATES
from ffc.runtime.data.convert import RowError, sft
from ffc.runtime.data.registry import parse_entry

SHAREGPT = parse_entry(None, "s", {"file_name": "s.json", "formatting": "sharegpt", "columns": {"tools": "tools"}})
OPENAI = parse_entry(None, "o", {"file_name": "o.json", "formatting": "openai", "columns": {"tools": "tools"}})
CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}
CALL2 = {"name": "get_time", "arguments": {"city": "Paris"}}


def _calls(message):
    return json.loads(message["content"])


def test_sharegpt_several_calls_and_text_form_one_turn():
    row = {
        "conversations": [
            {"from": "human", "value": "Weather and time in Paris?"},
            {"from": "gpt", "value": "Let me check."},
            {"from": "function_call", "value": json.dumps(CALL)},
            {"from": "function_call", "value": json.dumps(CALL2)},
            {"from": "observation", "value": "18"},
            {"from": "gpt", "value": "18 degrees."},
        ],
        "tools": "[]",
    }
    messages = sft(row, SHAREGPT)["messages"]
    assert [m["role"] for m in messages] == ["user", "function", "observation", "assistant"]
    assert _calls(messages[1]) == {"content": "Let me check.", "reasoning_content": "", "tool_calls": [CALL, CALL2]}


def test_openai_calls_keep_text_reasoning_and_string_arguments():
    calls = [
        {"type": "function", "function": {"name": "get_weather", "arguments": json.dumps(CALL["arguments"])}},
        {"type": "function", "function": CALL2},
    ]
    row = {
        "messages": [
            {"role": "user", "content": "Weather and time?"},
            {"role": "assistant", "content": "Checking.", "reasoning_content": "Two tools.", "tool_calls": calls},
            {"role": "tool", "content": "18"},
            {"role": "assistant", "content": "18.", "reasoning_content": "Report it."},
        ]
    }
    messages = sft(row, OPENAI)["messages"]
    assert _calls(messages[1]) == {  # arguments given as JSON text stay text: each template writes them its way
        "content": "Checking.",
        "reasoning_content": "Two tools.",
        "tool_calls": [{"name": "get_weather", "arguments": json.dumps(CALL["arguments"])}, CALL2],
    }
    assert messages[3]["content"] == "<think>\nReport it.\n</think>\n\n18."


def test_single_call_without_text_keeps_the_plain_form():
    row = {"messages": [{"role": "user", "content": "?"}, {"role": "assistant", "tool_calls": [{"function": CALL}]}]}
    assert _calls(sft(row, OPENAI)["messages"][1]) == CALL


def test_bad_reasoning_is_a_row_error():
    row = {
        "messages": [{"role": "user", "content": "?"}, {"role": "assistant", "content": "a", "reasoning_content": 3}]
    }
    with pytest.raises(RowError, match="reasoning_content"):
        sft(row, OPENAI)


def test_qwen3_renders_the_converted_turn_as_the_official_template_does():
    """Text, reasoning and two calls in one turn, the official way (blank line after the system prompt too)."""
    row = {
        "messages": [
            {"role": "system", "content": "Sys."},
            {"role": "user", "content": "Q"},
            {
                "role": "assistant",
                "content": "Checking.",
                "reasoning_content": "R",
                "tool_calls": [{"function": CALL}, {"function": CALL2}],
            },
        ],
        "tools": json.dumps([{"name": "get_weather"}]),
    }
    conv = sft(row, OPENAI)
    text = TEMPLATES["qwen3"].render(conv["messages"], system=conv["system"], tools=conv["tools"]).text
    assert text.startswith("<|im_start|>system\nSys.\n\n# Tools\n")
    assert text.endswith(
        "<|im_start|>assistant\n<think>\nR\n</think>\n\nChecking.\n<tool_call>\n"
        + json.dumps(CALL)
        + "\n</tool_call>\n"
        "<tool_call>\n" + json.dumps(CALL2) + "\n</tool_call><|im_end|>\n"
    )


def test_server_keeps_a_turns_calls_and_text_together():
    from ffc.runtime.server import ChatRequest, to_conversation

    calls = [
        {
            "id": "a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps(CALL["arguments"])},
        },
        {"id": "b", "type": "function", "function": {"name": "get_time", "arguments": json.dumps(CALL2["arguments"])}},
    ]
    request = ChatRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "?"},
                {"role": "assistant", "content": "Checking.", "tool_calls": calls},
                {"role": "tool", "content": "18"},
            ],
        }
    )
    _, messages = to_conversation(request.messages)
    assert [m["role"] for m in messages] == ["user", "function", "observation"]
    # The arguments' JSON text and the call ids as the client sent them (each template writes them its way).
    sent = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"], "id": c["id"]} for c in calls]
    assert _calls(messages[1]) == {"content": "Checking.", "tool_calls": sent}


def test_tokenizer_templates_get_openai_calls_back():
    from ffc.runtime.chat.hf import TokenizerTemplate

    message = {
        "role": "function",
        "content": json.dumps({"content": "Hm.", "reasoning_content": "R", "tool_calls": [CALL]}),
    }
    hub = TokenizerTemplate._hub_role(message)
    assert hub == {
        "role": "assistant",
        "content": "Hm.",
        "tool_calls": [{"type": "function", "function": CALL}],
        "reasoning_content": "R",
    }


def test_several_results_stay_apart_until_the_template_joins_them():
    row = {
        "messages": [
            {"role": "user", "content": "?"},
            {"role": "assistant", "tool_calls": [{"function": CALL}, {"function": CALL2}]},
            {"role": "tool", "content": "18"},
            {"role": "tool", "content": "noon"},
            {"role": "assistant", "content": "18 at noon."},
        ]
    }
    messages = sft(row, OPENAI)["messages"]
    assert json.loads(messages[2]["content"]) == {"tool_results": ["18", "noon"]}
    qwen = TEMPLATES["qwen"].render(messages).text
    assert (
        "<|im_start|>user\n<tool_response>\n18\n</tool_response>\n<tool_response>\nnoon\n</tool_response><|im_end|>"
        in qwen
    )
    assert "<|im_start|>user\n18\nnoon<|im_end|>" in TEMPLATES["chatml"].render(messages).text  # the default: a newline


def test_preference_responses_keep_their_reasoning():
    from ffc.runtime.data.convert import pairs

    attr = parse_entry(None, "p", {"file_name": "p.json", "formatting": "openai", "ranking": True})
    row = {
        "messages": [{"role": "user", "content": "2+2?"}],
        "chosen": {"role": "assistant", "content": "4", "reasoning_content": "Add."},
        "rejected": {"role": "assistant", "content": "5"},
    }
    converted = pairs(row, attr)
    assert converted["chosen"] == "<think>\nAdd.\n</think>\n\n4" and converted["rejected"] == "5"
