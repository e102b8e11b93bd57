"""Family-specific parity that the generic harness (test_template_reference.py) cannot express.

DeepSeek's templates only take arguments as JSON text and ignore the tools list, V3.1 switches
thinking with its own ``thinking`` kwarg, R1's reasoning is inline in the content. Each case
renders the official template in transformers' environment and compares ffc's Python renderer
(after the data converter, as a dataset row) and ffc's exported Jinja with it.
"""

from __future__ import annotations

import copy
import json

import pytest

from ffc.runtime.chat.templates import TEMPLATES

from .conftest import REFERENCE, needs_shared
from .test_template_reference import (
    PLAIN,
    THINKING,
    THINKING_TOOL,
    TOOL_CALL,
    TOOL_CALLS_WITH_TEXT,
    TOOL_RESULTS,
    TOOLS,
    _env,
    _ffc_python,
    _jinja,
    _official,
    _string_arguments,
)

pytestmark = [needs_shared(REFERENCE), pytest.mark.shared]

# ffc template -> reference folder, template file
DEEPSEEK = {
    "deepseekr1": ("deepseek-r1", "chat_template.jinja"),
    "deepseekr1_0528": ("deepseek-r1-0528-qwen3-8b", "chat_template.jinja"),
    "deepseek_v3_1": ("deepseek-v3.1", "chat_template.jinja"),
}
HISTORY_WITH_REASONING = THINKING[:4]  # earlier responses' reasoning is dropped before a new query


def _three(name, conversation, generation=False, official_kwargs=None, **ffc_kwargs):
    """(official, ffc python, ffc jinja) renderings; the official template gets arguments as JSON text."""
    folder, source = DEEPSEEK[name]
    template, meta = _official(folder, source)
    bos, eos = meta["bos_token"], meta["eos_token"]
    official = _jinja(template, _string_arguments(conversation), bos, eos, None, generation, **(official_kwargs or {}))
    python = _ffc_python(name, conversation, None, generation, bos, eos, **ffc_kwargs)
    jinja = _jinja(TEMPLATES[name].to_jinja(), conversation, bos, eos, None, generation, **ffc_kwargs)
    return official, python, jinja


@pytest.mark.parametrize("name", list(DEEPSEEK))
@pytest.mark.parametrize(
    "conversation,generation",
    [
        pytest.param(TOOL_CALL, False, id="tool_call"),
        pytest.param(TOOL_CALLS_WITH_TEXT, False, id="several_calls_with_text"),
        pytest.param(TOOL_CALL[:4], True, id="prompt_after_tool"),
        pytest.param(HISTORY_WITH_REASONING, True, id="prompt_after_reasoning"),
        pytest.param(TOOL_RESULTS, False, id="several_results"),
    ],
)
def test_deepseek_calls_outputs_and_history(name, conversation, generation):
    official, python, jinja = _three(name, conversation, generation)
    assert python == official
    assert jinja == official


def test_deepseek_v31_thinking_generation_prompt():
    for thinking in (True, False):
        official, python, jinja = _three(
            "deepseek_v3_1", PLAIN[:4], True, official_kwargs={"thinking": thinking}, enable_thinking=thinking
        )
        assert python == official == jinja
        assert official.endswith("<｜Assistant｜><think>" if thinking else "<｜Assistant｜></think>")


def test_deepseek_training_keeps_the_reasoning_being_trained():
    """The official templates drop every reasoning; ffc keeps the last response's (see notes), trained."""
    r1 = TEMPLATES["deepseekr1"].render(THINKING)
    assert r1.segments[-2].text == "<｜Assistant｜><think>\n"  # R1's generation prompt opens <think>
    assert r1.segments[-1].text == "2 plus 2 equals 4.\n</think>\n\n4<｜end▁of▁sentence｜>"
    assert "greets" not in r1.text
    v31 = TEMPLATES["deepseek_v3_1"].render(THINKING).segments
    assert [v31[-2].text, v31[-1].text] == [
        "<｜Assistant｜><think>",
        "2 plus 2 equals 4.</think>4<｜end▁of▁sentence｜>",
    ]
    r0528 = TEMPLATES["deepseekr1_0528"].render(THINKING).segments
    assert r0528[-1].text.startswith("<think>\n2 plus 2") and r0528[-1].kind == "response"


def test_deepseek_v31_tool_list_follows_the_model_card():
    text = TEMPLATES["deepseek_v3_1"].render(PLAIN[:3], tools=TOOLS).text
    assert text == (
        "You are a helpful assistant.\n\n## Tools\nYou have access to the following tools:\n\n"
        "### get_weather\nDescription: Get the current weather for a city.\n\nParameters: "
        '{"type": "object", "properties": {"city": {"type": "string", "description": "City name"}, '
        '"unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"}}, '
        '"required": ["city"]}\n\nIMPORTANT: ALWAYS adhere to this exact format for tool use:\n'
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>tool_call_name<｜tool▁sep｜>tool_call_arguments"
        "<｜tool▁call▁end｜>{additional_tool_calls}<｜tool▁calls▁end｜>\n\nWhere:\n"
        "- `tool_call_name` must be an exact match to one of the available tools\n"
        "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema\n"
        "- For multiple tool calls, chain them directly without separators or spaces"
        "<｜User｜>Hi<｜Assistant｜></think>Hello!<｜end▁of▁sentence｜>"
    )
    jinja = _jinja(TEMPLATES["deepseek_v3_1"].to_jinja(), PLAIN[:3], "", "", TOOLS, False)
    assert jinja == text


def test_deepseek_r1_refuses_a_tool_list():
    from ffc.runtime.chat.templates import ConversationError

    with pytest.raises(ConversationError, match="no format for tool definitions"):
        TEMPLATES["deepseekr1"].render(PLAIN, tools=[{"name": "f", "parameters": {}}])


def _with_ids(conversation: list[dict]) -> list[dict]:
    """Kimi-K2's call ids: a call is functions.<name>:<index>, and its result names that id."""
    out, position = copy.deepcopy(conversation), 0
    for index, message in enumerate(out):
        for i, call in enumerate(message.get("tool_calls", [])):
            call["id"] = f"functions.{call['function']['name']}:{i}"
        if message["role"] == "tool":
            position = 0 if out[index - 1]["role"] != "tool" else position + 1
            message["tool_call_id"] = f"functions.{message['name']}:{position}"
    return out


@pytest.mark.parametrize(
    "conversation,generation",
    [
        pytest.param(TOOL_CALL, False, id="tool_call"),
        pytest.param(TOOL_CALLS_WITH_TEXT, False, id="several_calls_with_text"),
        pytest.param(TOOL_CALL[:4], True, id="prompt_after_tool"),
        pytest.param(TOOL_RESULTS, False, id="several_results"),
    ],
)
def test_kimi_calls_with_kimi_ids(conversation, generation):
    template, meta = _official("kimi-k2-instruct", "chat_template.jinja")
    conversation = _with_ids(conversation)
    official = _jinja(template, conversation, None, None, TOOLS, generation)
    assert _ffc_python("kimi_k2", conversation, TOOLS, generation, None, None) == official
    assert _jinja(TEMPLATES["kimi_k2"].to_jinja(), conversation, None, None, TOOLS, generation) == official


def _thinking_key(conversation: list[dict]) -> list[dict]:
    """gpt-oss's template reads reasoning from ``thinking``; ffc's data (and its Jinja) from reasoning_content."""
    out = copy.deepcopy(conversation)
    for message in out:
        if "reasoning_content" in message:
            message["thinking"] = message.pop("reasoning_content")
    return out


@pytest.mark.parametrize(
    "conversation,tools,generation",
    [
        pytest.param(THINKING, None, False, id="thinking"),
        pytest.param(THINKING_TOOL, TOOLS, False, id="reasoning_before_a_call_then_final"),
        pytest.param(THINKING_TOOL[:3], TOOLS, False, id="reasoning_before_the_last_call"),
        pytest.param(THINKING[:4], None, True, id="prompt_after_reasoning"),
    ],
)
def test_gpt_oss_reasoning(conversation, tools, generation):
    template, meta = _official("gpt-oss", "chat_template.jinja")
    official = _jinja(template, _thinking_key(conversation), meta["bos_token"], meta["eos_token"], tools, generation)
    python = _ffc_python("gpt_oss", conversation, tools, generation, meta["bos_token"], meta["eos_token"])
    assert python == official
    jinja = _jinja(TEMPLATES["gpt_oss"].to_jinja(), conversation, meta["bos_token"], None, tools, generation)
    assert jinja == official


def test_gpt_oss_several_results_of_one_call():
    """Each result is its own message from the function it answers (the official template renders one call)."""
    conversation = [m for m in TOOL_RESULTS if m["role"] != "assistant" or "tool_calls" not in m]
    call = {**TOOL_RESULTS[2], "tool_calls": TOOL_RESULTS[2]["tool_calls"][:1]}
    conversation.insert(2, call)
    template, meta = _official("gpt-oss", "chat_template.jinja")
    official = _jinja(template, conversation, None, None, TOOLS, False)
    assert official.count("<|start|>functions.get_weather to=assistant") == 2
    assert _ffc_python("gpt_oss", conversation, TOOLS, False, None, None) == official
    assert _jinja(TEMPLATES["gpt_oss"].to_jinja(), conversation, None, None, TOOLS, False) == official


def test_gpt_oss_recorded_thinking_rendering():
    expected = (REFERENCE / "gpt-oss" / "rendered_example.thinking.txt").read_text(encoding="utf-8")
    rendered = TEMPLATES["gpt_oss"].render(THINKING)
    assert rendered.text == expected
    assert rendered.segments[-1].text == (
        "<|channel|>analysis<|message|>2 plus 2 equals 4.<|end|><|start|>assistant<|channel|>final<|message|>4<|return|>"
    )
    assert rendered.segments[-1].kind == "response"


def test_gpt_oss_tool_schemas_render_as_typescript():
    """Nested objects, oneOf, arrays, type lists and defaults, against the official macro."""
    tools = [
        {
            "name": "f",
            "description": "D",
            "parameters": {
                "type": "object",
                "required": ["a"],
                "properties": {
                    "a": {"type": "object", "properties": {"x": {"type": "string"}, "y": {"type": "integer"}}},
                    "b": {"oneOf": [{"type": "string", "description": "s"}, {"type": "number", "default": 3}]},
                    "c": {"type": "array", "items": {"type": "object"}},
                    "d": {"type": "string", "default": "hi", "description": "dd"},
                    "e": {"type": "string", "enum": ["p", "q"], "default": "p"},
                    "g": {"type": ["string", "null"]},
                    "i": {"type": "array", "items": {"type": "string"}, "nullable": True},
                    "k": {"type": "string", "nullable": True},
                },
            },
        },
        {"name": "g", "description": "E", "parameters": {}},
    ]
    wrapped = [{"type": "function", "function": t} for t in tools]
    template, meta = _official("gpt-oss", "chat_template.jinja")
    messages = [{"role": "user", "content": "x"}]
    official = _jinja(template, messages, None, None, wrapped, True)
    assert TEMPLATES["gpt_oss"].render(messages, tools=tools, add_generation_prompt=True).text == official
    assert _jinja(TEMPLATES["gpt_oss"].to_jinja(), messages, None, None, wrapped, True) == official


@pytest.mark.parametrize("name", ["deepseekr1", "deepseekr1_0528", "deepseek_v3_1", "glm4_moe", "gpt_oss"])
@pytest.mark.parametrize("conversation,tools", [(THINKING, None), (THINKING_TOOL, TOOLS)], ids=["thinking", "tool"])
def test_reasoning_in_every_turn(name, conversation, tools):
    """reasoning_turns "all" (LLaMA-Factory's way): earlier responses keep their reasoning, Python and Jinja alike."""
    import dataclasses

    from ffc.runtime.data.convert import sft

    from .test_template_reference import OPENAI

    template = dataclasses.replace(TEMPLATES[name], reasoning_turns="all")
    if tools and name.startswith("deepseekr1"):
        tools = None  # R1 has no tool-list format
    row = sft({"messages": conversation, "tools": json.dumps(tools) if tools else ""}, OPENAI)
    python = template.render(row["messages"], system=row["system"], tools=row["tools"] or None).text
    if name == "glm4_moe":
        python = python.removesuffix("</s>")
    jinja = _jinja(template.to_jinja(), conversation, "", "</s>" if name == "glm4_moe" else "", tools, False)
    assert python.replace("</s>", "") == jinja
    if conversation is THINKING:  # the first response's reasoning: kept with "all", dropped officially
        assert "The user greets me" in python
        assert "The user greets me" not in TEMPLATES[name].render(row["messages"]).text


@pytest.mark.parametrize("name,ok", [("gpt_oss", True), ("glm4_moe", True), ("kimi_k2", True), ("deepseekr1", False)])
def test_tool_data_builds_with_a_family_renderer_that_has_a_tool_list(write_spec, tmp_path, name, ok):
    from ffc.compiler.loader import SpecError, load_spec
    from ffc.compiler.resolve import resolve

    from .conftest import MINIMAL_SPEC
    from .test_template_choice import TOOLS_ENTRY, _data

    _data(tmp_path, TOOLS_ENTRY)
    spec = write_spec(MINIMAL_SPEC.replace("[demo_alpaca]", "[tools_data]").replace("chatml", name))
    if ok:
        assert resolve(load_spec(spec)).spec.data.template == name
    else:
        with pytest.raises(SpecError, match="has no format for them"):
            resolve(load_spec(spec))


@pytest.mark.parametrize(
    "model,expected",
    [
        ("deepseek-ai/DeepSeek-R1", "deepseekr1"),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "deepseekr1"),
        ("deepseek-ai/DeepSeek-R1-0528-Qwen3-8B", "deepseekr1_0528"),
        ("deepseek-ai/DeepSeek-V3.1", "deepseek_v3_1"),
        ("deepseek-ai/DeepSeek-V3", "deepseek3"),
        ("deepseek-ai/deepseek-coder-6.7b-instruct", "deepseekcoder"),
        ("zai-org/GLM-4.5-Air", "glm4_moe"),
        ("THUDM/glm-4-9b-chat", "glm4"),
        ("openai/gpt-oss-20b", "gpt_oss"),
        ("moonshotai/Kimi-K2-Instruct", "kimi_k2"),
        ("01-ai/Yi-1.5-9B-Chat", "yi1_5"),
        ("01-ai/Yi-6B-Chat", "yi"),
    ],
)
def test_template_auto_knows_the_families_by_name(model, expected):
    from ffc.runtime.chat.templates.detect import suggest_template

    assert suggest_template(model)[0] == expected


@pytest.mark.parametrize(
    "folder,source,expected",
    [
        ("gpt-oss", "chat_template.jinja", "gpt_oss"),
        ("deepseek-v3.1", "chat_template.jinja", "deepseek_v3_1"),
        ("deepseek-r1-distill-qwen", "chat_template.latest.jinja", "deepseekr1"),
        ("glm-4.5", "chat_template.jinja", "glm4_moe"),
        ("kimi-k2-instruct", "chat_template.jinja", "kimi_k2"),
    ],
)
def test_template_auto_knows_the_families_by_their_chat_template(tmp_path, folder, source, expected):
    from ffc.runtime.chat.templates.detect import suggest_template

    model = tmp_path / "local-model"
    model.mkdir()
    (model / "chat_template.jinja").write_text((REFERENCE / folder / source).read_text(encoding="utf-8"))
    assert suggest_template(str(model))[0] == expected


REASONING_FAMILIES = ["deepseekr1", "deepseekr1_0528", "deepseek_v3_1", "glm4_moe", "gpt_oss"]


@pytest.mark.parametrize("name", REASONING_FAMILIES)
@pytest.mark.parametrize("enable_thinking", [True, False])
@pytest.mark.parametrize("conversation", [PLAIN, THINKING], ids=["no_reasoning", "reasoning"])
def test_thinking_modes_train_what_generation_continues(name, enable_thinking, conversation):
    """With thinking on or off, the generation prompt is a prefix of the training text of the last response
    (so the model is trained on what it continues at inference), and the exported Jinja renders both alike."""
    from ffc.runtime.data.convert import sft

    from .test_template_reference import OPENAI

    template = TEMPLATES[name]
    messages = sft({"messages": conversation, "tools": ""}, OPENAI)["messages"]
    full = template.render(messages, enable_thinking=enable_thinking)
    prompt = template.render(messages[:-1], add_generation_prompt=True, enable_thinking=enable_thinking).text
    assert full.text.startswith(prompt)
    trained = "".join(s.text for s in full.segments if s.kind == "response" and s.turn == full.num_turns - 1)
    assert full.text.removesuffix("</s>").endswith(trained.removesuffix("</s>"))
    if not enable_thinking:
        assert "2 plus 2" not in full.text
    elif conversation is THINKING and name != "gpt_oss":
        assert "2 plus 2 equals 4." in trained
    system = conversation[0]["content"]
    kwargs = {"enable_thinking": enable_thinking}
    jinja = _jinja(template.to_jinja(), conversation[:-1], "", "", None, True, **kwargs)
    assert jinja == template.render(messages[:-1], system=system, add_generation_prompt=True, **kwargs).text


# -- seeded random conversations against the official templates ------------------------------------------
RANDOM_FOLDERS = {
    "deepseekr1": "deepseek-r1",
    "deepseekr1_0528": "deepseek-r1-0528-qwen3-8b",
    "deepseek_v3_1": "deepseek-v3.1",
    "glm4_moe": "glm-4.5",
    "gpt_oss": "gpt-oss",
    "kimi_k2": "kimi-k2-instruct",
}
WORDS = ["Hi", "What is 2+2?", "Paris", "  spaced  ", "multi\nline", "你好"]


def _random_conversation(name: str, rng) -> tuple[list[dict], bool]:
    """A conversation of 1-3 user turns, tool rounds (one call, or two with text beside them) and reasoning,
    outside the documented differences (see each template's notes): DeepSeek keeps the reasoning it trains
    after the last user message, Kimi-K2 has none, R1's template breaks from its second tool round on,
    gpt-oss renders one call per turn and no text beside reasoning."""
    messages = [{"role": "system", "content": rng.choice(["You are helpful.", "Be brief."])}] * (rng.random() < 0.7)
    for turn in range(rng.randint(1, 3)):
        messages.append({"role": "user", "content": rng.choice(WORDS)})
        for round_ in range(rng.choice([0, 0, 1, 2] if name != "deepseekr1" or turn else [0, 1])):
            calls = [
                {
                    "id": f"c{turn}{round_}{i}",
                    "type": "function",
                    "function": {"name": rng.choice(["get_weather", "f"]), "arguments": {"city": rng.choice(WORDS)}},
                }
                for i in range(1 if name == "gpt_oss" else rng.choice([1, 1, 2]))
            ]
            if name in ("gpt_oss", "kimi_k2") and rng.random() < 0.3:  # OpenAI's JSON text: quoted, as officially
                for call in calls:
                    call["function"]["arguments"] = json.dumps(call["function"]["arguments"], separators=(",", ":"))
            call = {"role": "assistant", "content": "" if name == "gpt_oss" else rng.choice(["", "Let me check."])}
            if rng.random() < 0.4:
                call["reasoning_content"] = "think " + rng.choice(WORDS)
            messages.append({**call, "tool_calls": calls})
            name0 = calls[0]["function"]["name"]
            result = rng.choice(['{"t": 1}', "plain"])
            messages.append({"role": "tool", "tool_call_id": calls[0]["id"], "name": name0, "content": result})
        answer = {"role": "assistant", "content": rng.choice(WORDS)}
        if rng.random() < 0.5:
            answer["reasoning_content"] = "reason " + rng.choice(WORDS)
        messages.append(answer)
    if name == "deepseekr1" and sum(1 for m in messages if m.get("tool_calls")) > 1:
        return _random_conversation(name, rng)
    generation = rng.random() < 0.3
    if generation:
        messages = messages[:-1]
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    for index, message in enumerate(messages):
        if name == "kimi_k2" or (name.startswith("deepseek") and index > last_user):
            message.pop("reasoning_content", None)
    return messages, generation


def _official_form(name: str, messages: list[dict]) -> list[dict]:
    out = _string_arguments(messages) if name.startswith("deepseek") else copy.deepcopy(messages)
    return _thinking_key(out) if name == "gpt_oss" else out


@pytest.mark.parametrize("name", list(RANDOM_FOLDERS))
def test_random_conversations_render_as_official(name):
    import random

    rng = random.Random(13)
    template, meta = _official(RANDOM_FOLDERS[name], "chat_template.jinja")
    bos, eos = meta["bos_token"], meta["eos_token"]
    tools = None if name.startswith("deepseek") else TOOLS
    official_template = _env().from_string(template)  # compiled once: the test renders many conversations
    ffc_template = _env().from_string(TEMPLATES[name].to_jinja())

    def render(compiled, messages, generation):
        return compiled.render(
            messages=messages, tools=tools, bos_token=bos, eos_token=eos, add_generation_prompt=generation
        )

    for _ in range(40):
        messages, generation = _random_conversation(name, rng)
        official = render(official_template, _official_form(name, messages), generation)
        python = _ffc_python(name, messages, tools, generation, bos, eos)
        jinja = render(ffc_template, messages, generation)
        if name == "glm4_moe" and not generation:
            jinja = jinja.removesuffix(eos)
        assert python == official, messages
        assert jinja == official, messages
