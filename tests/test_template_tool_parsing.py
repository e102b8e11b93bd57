"""serve.py reads back the tool calls a model writes: for every template with a tool format (or call markup of
its own), the calls of a rendered turn, cut where generation stops, parse to the calls that were rendered.

Each family's parser is its template's ``parse_calls``, next to its rendering; serve.py turns the result into
OpenAI's ``tool_calls`` (``ffc.runtime.inference.parse_tool_calls``).
"""

from __future__ import annotations

import json

import pytest

from ffc.runtime.chat.templates import TEMPLATES, ConversationError
from ffc.runtime.chat.templates.base import ChatTemplate
from ffc.runtime.inference import _answer_and_calls, _until_stop, parse_tool_calls

ARGS = {"city": "Paris", "days": 3, "exact": True, "units": ["celsius", "kelvin"]}
CALLS = [{"name": "get_weather", "arguments": ARGS}, {"name": "get_time", "arguments": {"zone": "CET"}}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": c["name"],
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer"},
                    "exact": {"type": "boolean"},
                    "units": {"type": "array"},
                    "zone": {"type": "string"},
                },
            },
        },
    }
    for c in CALLS
]
EOS = "</s>"
# Families whose format cannot hold a case: the reason (the renderer refuses such a turn, or generation ends first).
CANNOT = {
    ("llama3_1", "two_calls"): "Llama 3.1 makes one call per turn",
    ("llama3_1", "text_beside"): "Llama 3.1's format has no place for text beside a call",
    ("gpt_oss", "two_calls"): "harmony ends the turn at each call (<|call|> is a stop string): one call per answer",
}


def tool_capable() -> list[str]:
    """Templates with a tool format, and those with call markup of their own (DeepSeek-R1 renders calls but has
    no official tools list)."""
    return [
        name for name, t in TEMPLATES.items() if t.renders_tools or type(t).parse_calls is not ChatTemplate.parse_calls
    ]


def generated(template, calls: list[dict], text: str = "") -> str:
    """What the model generates for a calling turn: its trained response, up to the first stop string."""
    value = {"content": text, "tool_calls": calls} if text else calls
    messages = [{"role": "user", "content": "Weather?"}, {"role": "function", "content": json.dumps(value)}]
    rendered = template.render(messages, bos="<s>", eos=EOS, tools=TOOLS if template.renders_tools else None)
    response = "".join(s.text for s in rendered.segments if s.kind == "response")
    return _until_stop(response, template.stop_strings(EOS))


CASES = {
    "one_call": (CALLS[:1], ""),
    "two_calls": (CALLS, ""),
    "text_beside": (CALLS[:1], "Let me check."),
    "arguments_as_json_text": ([{"name": "get_weather", "arguments": json.dumps(ARGS)}], ""),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", tool_capable())
def test_parse_reads_back_the_rendered_calls(name, case):
    template = TEMPLATES[name]
    if (name, case) in CANNOT:
        pytest.skip(CANNOT[name, case])
    calls, text = CASES[case]
    try:
        answer = generated(template, calls, text)
    except ConversationError as exc:
        pytest.skip(f"{name} cannot render this turn: {exc}")
    beside, parsed = parse_tool_calls(template, answer, TOOLS)
    assert [c["name"] for c in parsed] == [c["name"] for c in calls], answer
    # OpenAI's form: JSON text, whether the family wrote an object or (quoted) the text it was given.
    decoded = [json.loads(c["arguments"]) for c in parsed]
    assert decoded == [json.loads(c["arguments"]) if isinstance(c["arguments"], str) else c["arguments"] for c in calls]
    if text in answer:  # (Gemma 4 writes a calling turn's text after the results, not in the answer that calls)
        assert text in beside
    else:
        assert "get_weather" not in beside and "{" not in beside, beside


def test_every_family_with_a_tool_format_is_covered():
    names = tool_capable()
    assert {"qwen", "qwen3", "qwen3_5", "llama3_1", "llama4", "mistral_v3", "ministral", "mistral_small"} <= set(names)
    assert {"gpt_oss", "kimi_k2", "glm4_moe", "gemma4", "deepseek3", "deepseekr1", "deepseek_v3_1"} <= set(names)


@pytest.mark.parametrize("name", ["chatml", "llama3", "phi4_mini"])
def test_templates_without_a_tool_format_read_no_calls(name):
    """A JSON answer is not a call where the template has no tool format (serve.py refuses their tools)."""
    answer = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    assert parse_tool_calls(TEMPLATES[name], answer) == (answer, [])


@pytest.mark.parametrize(
    "name,answer",
    [
        ("qwen", "<tool_call>\nnot json\n</tool_call>"),
        ("mistral_v3", " [TOOL_CALLS] [oops"),
        ("kimi_k2", "Hi <|tool_calls_section_begin|>"),
        ("deepseek3", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{bad\n```"),
        ("llama3_1", '{"name": "f", "parameters": {"a": 1}} and more'),
        ("gemma4", '<|tool_call>call:f{a:<|"|>x}<tool_call|>'),
    ],
)
def test_malformed_calls_stay_text(name, answer):
    assert parse_tool_calls(TEMPLATES[name], answer) == (answer, [])


def test_typed_values_follow_the_tool_schema():
    """Qwen3.5 and GLM-4.5 write values as bare text: the schema's string type keeps '3' text."""
    tools = [
        {"type": "function", "function": {"name": "f", "parameters": {"properties": {"code": {"type": "string"}}}}}
    ]
    for name in ("qwen3_6", "glm4_moe"):
        answer = generated(TEMPLATES[name], [{"name": "f", "arguments": {"code": "3", "n": 3}}])
        _, calls = TEMPLATES[name].parse_calls(answer, tools)
        assert calls == [{"name": "f", "arguments": {"code": "3", "n": 3}}]


class _Tokenizer:
    """decode() as a tokenizer with special tokens: serve reads calls from the tokens, not the streamed text."""

    eos_token = EOS

    def __init__(self, text: str):
        self.text = text

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        assert not skip_special_tokens
        return self.text


def test_serve_reads_calls_marked_by_special_tokens():
    template = TEMPLATES["mistral_small"]
    raw = generated(template, CALLS[:1]) + EOS + "ignored after the stop"
    streamed = "get_weathercall00001{...}"  # the streamed text, special tokens left out
    text, calls = _answer_and_calls(template, _Tokenizer(raw), [1, 2], streamed, template.stop_strings(EOS), TOOLS)
    assert (text, [c["name"] for c in calls], calls[0]["id"]) == ("", ["get_weather"], "call00001")
    plain = _answer_and_calls(template, _Tokenizer("Hello" + EOS), [1], "Hello", template.stop_strings(EOS), None)
    assert plain == ("Hello", [])
    # A request's own stop strings replace the template's as generation stops; the answer still ends at them.
    qwen = TEMPLATES["qwen"]
    raw = generated(qwen, CALLS[:1]) + "<|im_end|>\n<|im_start|>user"
    assert _answer_and_calls(qwen, _Tokenizer(raw), [1], "", ("STOP",), TOOLS)[0] == ""


@pytest.mark.parametrize("name", ["mistral_small", "gpt_oss", "qwen3_6"])
def test_serve_takes_tools_for_every_family_with_a_tool_format(name):
    """Hand-written families say so with renders_tools (serve.py used to refuse their tools)."""
    from ffc.runtime.inference import GenerationOptions
    from ffc.runtime.server import ChatRequest, prepare

    class Engine:
        template, context_length = TEMPLATES[name], None

        def prompt_ids(self, messages, system=None, tools=None):
            self.tools = tools
            return [1, 2, 3]

    engine = Engine()
    body = ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "?"}], "tools": TOOLS})
    prepare(engine, body, GenerationOptions(), 100)
    assert engine.tools == body.tools
