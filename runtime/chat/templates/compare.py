"""Compare an ffc template with a model's own chat template (``ffc templates --check MODEL_DIR``).

A few conversations (plain, generation prompt, tool call, reasoning) are rendered by ffc (through the
data converter, as a dataset row would be) and by the model's ``chat_template`` in an environment
that mirrors transformers' ``apply_chat_template`` (sandboxed Jinja, trim/lstrip blocks, loop
controls, ``tojson`` without HTML escaping, ``raise_exception``, ``strftime_now``), so a user can trust
a template on a model ffc has never seen. Jinja is used directly rather than transformers: the check
needs only the template text, and ``ffc`` commands must not import transformers.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import TEMPLATES

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
_CALL = {"id": "abc123def", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
# name -> (OpenAI-form messages, tools, add_generation_prompt, a word the model's template must contain)
CONVERSATIONS = {
    "plain": (
        [
            SYSTEM,
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4"},
        ],
        None,
        False,
        None,
    ),
    "generation prompt": ([{"role": "user", "content": "Hi"}], None, True, None),
    "tool call": (
        [
            SYSTEM,
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [_CALL]},
            {"role": "tool", "tool_call_id": "abc123def", "content": '{"temperature": 18}'},
            {"role": "assistant", "content": "18 °C."},
        ],
        TOOLS,
        False,
        "tool",
    ),
    "JSON-text args": (  # a tool call with OpenAI's form: written as the model's template writes it
        [
            SYSTEM,
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{**_CALL, "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}],
            },
            {"role": "tool", "tool_call_id": "abc123def", "content": '{"temperature": 18}'},
            {"role": "assistant", "content": "18 °C."},
        ],
        TOOLS,
        False,
        "tool",
    ),
    "reasoning": (
        [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4", "reasoning_content": "2 plus 2 is 4."},
        ],
        None,
        False,
        "reasoning_content",
    ),
}


@dataclass
class Outcome:
    conversation: str
    status: str  # same / differs / not rendered by the model's template / ffc cannot render
    detail: str = ""


def environment():
    """A Jinja environment that renders chat templates as transformers' apply_chat_template does."""
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):  # {% generation %} marks trained text for transformers; it renders its body
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.Scope(body, lineno=lineno)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env


def _token(value) -> Optional[str]:
    return value.get("content") if isinstance(value, dict) else value


def model_template(model_dir: Path) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """(chat template, bos, eos) saved in a model directory (tokenizer_config.json, chat_template.jinja/.json)."""

    def read(name: str):
        try:
            return json.loads((model_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    config = read("tokenizer_config.json") or {}
    special = read("special_tokens_map.json") or {}
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        template = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}.get("default")
    if not template and (model_dir / "chat_template.jinja").is_file():
        template = (model_dir / "chat_template.jinja").read_text(encoding="utf-8")
    if not template:
        template = (read("chat_template.json") or {}).get("chat_template")
    bos = _token(config.get("bos_token")) or _token(special.get("bos_token"))
    eos = _token(config.get("eos_token")) or _token(special.get("eos_token"))
    return (template if isinstance(template, str) else None), bos, eos


def _ffc_render(name: str, messages, tools, generation: bool, bos, eos) -> str:
    from ...data.convert import prompts, sft
    from ...data.registry import DatasetAttr

    attr = DatasetAttr(name="check", source="file", path="check.json", formatting="openai", columns={"tools": "tools"})
    row = {"messages": messages, "tools": json.dumps(tools) if tools else ""}
    converted = (prompts if generation else sft)(row, attr)
    return (
        TEMPLATES[name]
        .render(
            converted["messages"],
            bos=bos or "",
            eos=eos or "",
            system=converted["system"] or None,
            tools=converted["tools"] or None,
            add_generation_prompt=generation,
        )
        .text
    )


def _first_difference(ours: str, theirs: str) -> str:
    at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    return f"from character {at}: ffc {ours[max(0, at - 20) : at + 40]!r}, model {theirs[max(0, at - 20) : at + 40]!r}"


def check(name: str, model_dir: Path) -> list[Outcome]:
    """Each conversation rendered by ffc's template ``name`` and by the model's own chat template."""
    import jinja2

    template, bos, eos = model_template(model_dir)
    if template is None:
        raise FileNotFoundError(f"{model_dir} has no chat template (tokenizer_config.json, chat_template.jinja/.json)")
    compiled = environment().from_string(template)
    out = []
    for kind, (messages, tools, generation, needs) in CONVERSATIONS.items():
        if needs and needs not in template:
            out.append(Outcome(kind, "not rendered by the model's template"))
            continue
        try:
            theirs = compiled.render(
                messages=messages, tools=tools, add_generation_prompt=generation, bos_token=bos, eos_token=eos
            )
        except (jinja2.exceptions.TemplateError, TypeError) as exc:  # TypeError: e.g. DeepSeek's string-only arguments
            out.append(Outcome(kind, "not rendered by the model's template", str(exc)))
            continue
        try:
            ours = _ffc_render(name, messages, tools, generation, bos, eos)
        except Exception as exc:  # a ConversationError or RowError: reported, not raised
            out.append(Outcome(kind, "ffc cannot render", str(exc)))
            continue
        out.append(
            Outcome(kind, "same") if ours == theirs else Outcome(kind, "differs", _first_difference(ours, theirs))
        )
    return out
