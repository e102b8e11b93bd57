"""Export a ChatTemplate as a Hugging Face Jinja chat template (``tokenizer.chat_template``).

The exported template renders exactly what ``ChatTemplate.render`` trains on, so a saved model
renders conversations as it was trained in any tool that reads the template. It accepts ffc's
roles and the OpenAI-style ones (``tool`` results, assistant ``tool_calls``).
Template classes with their own response markup register a ``response_jinja`` /
``generation_opening_jinja`` implementation here (``functools.singledispatch``).
"""

from __future__ import annotations

import functools
import json
from typing import Optional

from .base import PLACEHOLDER, ChatTemplate, ReasoningTemplate, jinja_arguments

_CALL_JSON = "('{\"name\": ' + (call['name'] | tojson) + ', \"arguments\": ' + args + '}')"
_MESSAGE_CONTENT = "message['content']"


def jinja_str(text: str) -> str:
    """A Jinja string literal (JSON escapes are valid Jinja escapes)."""
    return json.dumps(text, ensure_ascii=False)


def jinja_expr(fmt: str, content: str = "''", system: str = "system") -> str:
    """A format string as a Jinja expression: literal parts and the placeholders' variables."""
    names = {"content": content, "system": system, "bos": "bos", "eos": "eos"}
    pieces, last = [], 0
    for match in PLACEHOLDER.finditer(fmt):
        if match.start() > last:
            pieces.append(jinja_str(fmt[last : match.start()]))
        pieces.append(f"({names[match.group(1)]})")
        last = match.end()
    if last < len(fmt):
        pieces.append(jinja_str(fmt[last:]))
    return " + ".join(pieces) if pieces else "''"


def jinja_call(t: ChatTemplate) -> str:
    """Jinja setting ``call`` (name, arguments) of a ``tool_call`` and ``args``, its ``arguments_text``."""
    return (
        "{%- set call = tool_call['function'] if tool_call['function'] is defined else tool_call -%}"
        "{%- set args = " + jinja_arguments("call['arguments']", t.arguments_as_given) + " -%}"
    )


def export(t: ChatTemplate, default_system: Optional[str] = None) -> str:
    """``t`` as one Jinja chat template string."""
    merge = t.system_in_first_user is not None
    parts = [
        "{%- set bos = bos_token or '' -%}{%- set eos = eos_token or '' -%}",
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- set system = messages[0]['content'] -%}{%- set loop_messages = messages[1:] -%}"
        "{%- else -%}"
        f"{{%- set system = {jinja_str(default_system or t.default_system or '')} -%}}"
        "{%- set loop_messages = messages -%}"
        "{%- endif -%}",
        "{%- set system = system | trim -%}" if t.strip_system else "",
        "{%- set ns = namespace(last_query=-1) -%}{%- for m in loop_messages -%}"
        "{%- if m['role'] == 'user' -%}{%- set ns.last_query = loop.index0 -%}{%- endif -%}{%- endfor -%}",
        f"{{{{- {jinja_expr(t.prefix)} -}}}}",
    ]
    if t.tools is not None:
        parts.append(
            "{%- if tools -%}{%- set tool_lines = namespace(text='') -%}{%- for tool in tools -%}"
            "{%- set entry = tool if tool['function'] is defined else {'type': 'function', 'function': tool} -%}"
            f"{{%- set tool_lines.text = tool_lines.text + ({jinja_str(t.tool_separator)} if not loop.first else '')"
            " + (entry | tojson) -%}{%- endfor -%}"
            f"{{%- if system -%}}{{%- set system = {jinja_expr(t.tools, content='tool_lines.text')} -%}}"
            f"{{%- else -%}}{{%- set system = {jinja_expr(t.tools_without_system or t.tools, content='tool_lines.text')} -%}}"
            "{%- endif -%}{%- endif -%}"
        )
    if not merge:
        parts.append(f"{{%- if system -%}}{{{{- {jinja_expr(t.system, content='system')} -}}}}{{%- endif -%}}")
    strip_user = "| trim" if t.strip_messages else ""
    user_expr = jinja_expr(t.user, content="content")
    observation_expr = jinja_expr(t.observation or t.user, content="content")
    observation_fmt = t.observation or t.user
    if observation_fmt.count("{content}") == 1:  # consecutive tool messages: one turn, as ffc joins them
        before, _, after = observation_fmt.partition("{content}")
        observation_expr = (
            f"({jinja_str(t.tool_result_separator)} if not loop.first and "
            "loop_messages[loop.index0 - 1]['role'] in ['observation', 'tool'] "
            f"else {jinja_expr(before)}) + content + ('' if not loop.last and "
            "loop_messages[loop.index0 + 1]['role'] in ['observation', 'tool'] "
            f"else {jinja_expr(after)})"
        )
    merged = ""
    if merge:
        pre = "content" if t.strip_after_merge else f"(message['content'] {strip_user})"
        merged_turn = "loop.index0 == ns.last_query" if t.system_in_last_user else "loop.first"
        merged = (
            f"{{%- if {merged_turn} and system -%}}"
            f"{{%- set content = {jinja_expr(t.system_in_first_user, system='system', content=pre)} -%}}"
            "{%- endif -%}"
        )
    after_merge = "{%- set content = content | trim -%}" if t.strip_after_merge else ""
    strip_response = "| trim" if (t.strip_messages or t.strip_after_merge) else ""
    turn_sep = jinja_expr(t.turn_sep)
    if not t.turn_sep_after_last:
        turn_sep = f"({turn_sep} if not loop.last else '')"
    parts += [
        "{%- for message in loop_messages -%}",
        "{%- if message['role'] in ['user', 'observation', 'tool'] -%}",
        f"{{%- set content = message['content'] {'' if t.strip_after_merge else strip_user} -%}}",
        merged,
        after_merge,
        "{%- if message['role'] == 'user' -%}"
        f"{{{{- {user_expr} -}}}}"
        f"{{%- else -%}}{{{{- {observation_expr} -}}}}{{%- endif -%}}",
        "{%- else -%}",
        "{%- if message['role'] == 'function' -%}",
        f"{{%- set body = {jinja_expr(t.function, content=_MESSAGE_CONTENT)} -%}}",
        "{%- set opening = '' -%}",
        "{%- else -%}",
        f"{{%- set content = (message['content'] if message['content'] is string else '') {strip_response} -%}}",
        response_jinja(t),
        "{%- if message['tool_calls'] is defined and message['tool_calls'] -%}",
        "{%- set calls = namespace(text='') -%}{%- for tool_call in message['tool_calls'] -%}",
        jinja_call(t),
        f"{{%- set calls.text = calls.text + ({jinja_str(t.call_separator)} if not loop.first else '') + "
        f"{jinja_expr(t.function, content=_CALL_JSON)} -%}}",
        "{%- endfor -%}",
        f"{{%- set body = body + ({jinja_str(t.call_text_separator)} if content else '') + calls.text -%}}",
        "{%- endif -%}",
        "{%- endif -%}",
        f"{{{{- {jinja_expr(t.assistant_prefix)} + opening + {jinja_str(t.response_lead)} + body + "
        f"{jinja_expr(t.assistant_end)} + {turn_sep} -}}}}",
        "{%- endif -%}",
        "{%- endfor -%}",
        f"{{%- if add_generation_prompt -%}}{{{{- {jinja_expr(t.assistant_prefix)} + {generation_opening_jinja(t)} -}}}}"
        f"{{%- else -%}}{{{{- {jinja_expr(t.final_suffix)} -}}}}{{%- endif -%}}",
    ]
    return "".join(part for part in parts if part)


@functools.singledispatch
def response_jinja(t: ChatTemplate) -> str:
    """Jinja that sets ``opening`` (untrained) and ``body`` from ``content``; see ``response_parts``."""
    return "{%- set opening = '' -%}{%- set body = content -%}"


@functools.singledispatch
def generation_opening_jinja(t: ChatTemplate) -> str:
    return "''"


@response_jinja.register
def _(t: ReasoningTemplate) -> str:
    think_open, think_close = jinja_str(t.think_open), jinja_str(t.think_close)
    empty = jinja_str(t.think_open.rstrip("\n") + "\n" + t.think_close)
    return (
        "{%- set reasoning = message['reasoning_content'] if message['reasoning_content'] is string else none -%}"
        "{%- if '</think>' in content -%}"
        "{%- if reasoning is none -%}"
        "{%- set reasoning = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') -%}"
        "{%- endif -%}"
        "{%- set content = content.split('</think>')[1:] | join('</think>') -%}"
        "{%- set content = content.lstrip('\\n') -%}"
        "{%- endif -%}"
        "{%- set reasoning = (reasoning or '').strip('\\n') -%}"
        "{%- set thinking = enable_thinking is not defined or enable_thinking is not false -%}"
        + (
            "{%- if false -%}"  # reasoning_turns "all": every response carries its think block
            if t.reasoning_turns == "all"
            else "{%- if loop.index0 <= ns.last_query or not (loop.last or reasoning) -%}"
        )
        + "{%- set opening = '' -%}{%- set body = content -%}"
        "{%- elif reasoning and thinking -%}"
        f"{{%- set opening = '' -%}}{{%- set body = {think_open} + reasoning + {think_close} + content -%}}"
        "{%- else -%}"
        f"{{%- set opening = {empty} -%}}{{%- set body = content -%}}"
        "{%- endif -%}"
    )


@generation_opening_jinja.register
def _(t: ReasoningTemplate) -> str:
    closed = jinja_str(t.think_open + t.think_close)
    return f"({closed} if enable_thinking is defined and enable_thinking is false else '')"
