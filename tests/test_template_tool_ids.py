"""Call ids and the tool-turn rules of Mistral's and Gemma 4's templates (Python renderer and exported Jinja).

Mistral's templates write a 9-character id with every call and its result; data without such ids gets
call00001, call00002, ... in both renderings. Turns these formats cannot hold (text beside calls,
results of several calls joined into one observation) are errors, never dropped text.
"""

import json

import jinja2.ext
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ffc.runtime.chat.templates import TEMPLATES, ConversationError
from ffc.runtime.data.convert import sft
from ffc.runtime.data.registry import parse_entry

OPENAI = parse_entry(None, "o", {"file_name": "o.json", "formatting": "openai", "columns": {"tools": "tools"}})
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def _call(city: str, call_id=None) -> dict:
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": city}}}
    return {**call, "id": call_id} if call_id else call


def _conversation(call_id=None, result_id=None) -> list[dict]:
    result = {"role": "tool", "content": '{"temperature": 18}'}
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [_call("Paris", call_id)]},
        {**result, "tool_call_id": result_id} if result_id else result,
        {"role": "assistant", "content": "18 °C."},
    ]


def _python(name: str, messages: list[dict]) -> str:
    converted = sft({"messages": messages, "tools": json.dumps(TOOLS)}, OPENAI)
    return TEMPLATES[name].render(converted["messages"], bos="<s>", eos="</s>", tools=converted["tools"]).text


def _jinja(name: str, messages: list[dict]) -> str:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False, **kw)
    template = env.from_string(TEMPLATES[name].to_jinja())
    return template.render(messages=messages, tools=TOOLS, bos_token="<s>", eos_token="</s>")


def test_the_converter_keeps_call_ids():
    converted = sft({"messages": _conversation("abc123def", "abc123def"), "tools": ""}, OPENAI)
    assert json.loads(converted["messages"][1]["content"])["id"] == "abc123def"


@pytest.mark.parametrize("name", ["mistral_v3", "ministral", "mistral_small"])
@pytest.mark.parametrize(
    "call_id,result_id,written",
    [
        ("abc123def", "abc123def", "abc123def"),  # a Mistral id is kept
        (None, None, "call00001"),  # none: numbered
        ("call_8f2a4c1e9b7d", "call_8f2a4c1e9b7d", "call00001"),  # OpenAI's longer ids: numbered
    ],
)
def test_mistral_call_ids(name, call_id, result_id, written):
    messages = _conversation(call_id, result_id)
    python, exported = _python(name, messages), _jinja(name, messages)
    assert python == exported
    assert python.count(written) == 2  # the call and its result
    if call_id and call_id != written:
        assert call_id not in python


@pytest.mark.parametrize("name", ["mistral_v3", "ministral", "mistral_small"])
def test_mistral_refuses_text_beside_calls(name):
    with_text = _conversation()
    with_text[1] = {**with_text[1], "content": "Let me check."}
    with pytest.raises(ConversationError, match="beside tool calls"):
        _python(name, with_text)


def _two_results(messages: list[dict], second: dict) -> list[dict]:
    """Two calls in one turn (the second as given) and a result for each."""
    messages = list(messages)
    messages[1] = {**messages[1], "tool_calls": [_call("Paris"), second]}
    messages.insert(3, {"role": "tool", "content": '{"temperature": 24}'})
    return messages


@pytest.mark.parametrize("name", ["mistral_v3", "ministral", "mistral_small", "gemma4", "llama4"])
def test_each_result_of_a_turn_answers_the_call_at_its_position(name):
    other = {"type": "function", "function": {"name": "get_time", "arguments": {"city": "Rome"}}}
    messages = _two_results(_conversation(), other)
    python = _python(name, messages)
    assert python == _jinja(name, messages)
    assert python.index("18}") < python.index("24}")  # the results in order (Llama 4 writes them as JSON strings)
    if name != "llama4":  # Mistral's results carry their call's id, Gemma 4's its call's name
        label = ("response:get_weather", "response:get_time") if name == "gemma4" else ("call00001", "call00002")
        results = python[python.index("[TOOL_RESULTS]" if name != "gemma4" else "<|tool_response>") :]
        assert [results.count(x) for x in label] == [1, 1]
        assert results.index(label[0]) < results.index(label[1])


@pytest.mark.parametrize("enable_thinking,kept", [(None, True), (True, True), (False, False)])
def test_gemma4_thought_before_calls_follows_enable_thinking(enable_thinking, kept):
    messages = _conversation()
    messages[1] = {**messages[1], "reasoning_content": "I need the weather tool."}
    converted = sft({"messages": messages, "tools": json.dumps(TOOLS)}, OPENAI)
    python = (
        TEMPLATES["gemma4"]
        .render(converted["messages"], bos="<s>", tools=converted["tools"], enable_thinking=enable_thinking)
        .text
    )
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False, **kw)
    options = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    exported = env.from_string(TEMPLATES["gemma4"].to_jinja()).render(
        messages=messages, tools=TOOLS, bos_token="<s>", **options
    )
    assert python == exported
    assert ("<|channel>thought\nI need the weather tool.\n<channel|>" in python) is kept
