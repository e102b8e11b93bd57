"""Rows of alpaca, sharegpt and openai datasets -> one message form.

A conversation is ``{"messages": [{"role", "content"}...], "system": str, "tools": str}``
with roles user, assistant, function (an assistant tool call, JSON) and
observation (a tool result). Pre-training rows become ``{"text": str}``.
A row that cannot be converted raises ``RowError`` with the reason; the loader adds
the file and row number.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from .registry import DatasetAttr


class RowError(ValueError):
    pass


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    raise RowError(f"{what} must be text, got {type(value).__name__}")


def _json_text(value: Any, what: str) -> str:
    """Tools and tool calls may be stored as JSON text or as objects: keep them as JSON text."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError as exc:
            raise RowError(f"{what} is not valid JSON ({exc.msg})") from None
        return value
    return json.dumps(value, ensure_ascii=False)


def alpaca(row: dict, attr: DatasetAttr) -> dict:
    def col(key: str) -> Optional[str]:
        name = attr.column(key)
        if name and name not in row:
            if key in ("prompt", "response"):
                raise RowError(f"column {name!r} ({key}) is missing; the row has {', '.join(row) or 'no columns'}")
            return None
        return row.get(name) if name else None

    messages = []
    history = col("history") or []
    if not isinstance(history, list):
        raise RowError("history must be a list of [instruction, response] pairs")
    for pair in history:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise RowError("each history entry must be an [instruction, response] pair")
        messages += [
            {"role": "user", "content": _text(pair[0], "history instruction")},
            {"role": "assistant", "content": _text(pair[1], "history response")},
        ]
    prompt = _text(col("prompt"), "instruction")
    query = _text(col("query"), "input")
    user = "\n".join(part for part in (prompt, query) if part)
    response = col("response")
    if isinstance(response, list):  # preference data keeps its responses for later stages
        raise RowError("response is a list: this looks like ranking data, which stage sft cannot use")
    response = _text(response, "output")
    if not user:
        raise RowError("the instruction and input are both empty")
    if not response:
        raise RowError("the output is empty: nothing to train on")
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": response}]
    return {"messages": messages, "system": _text(col("system"), "system"), "tools": _json_text(col("tools"), "tools")}


def sharegpt(row: dict, attr: DatasetAttr) -> dict:
    name = attr.column("messages")
    turns = row.get(name)
    if turns is None:
        raise RowError(f"column {name!r} (messages) is missing; the row has {', '.join(row) or 'no columns'}")
    if not isinstance(turns, list) or not turns:
        raise RowError(f"{name!r} must be a non-empty list of messages")
    role_tag, content_tag = attr.tag("role_tag"), attr.tag("content_tag")
    roles = {
        attr.tag("user_tag"): "user",
        attr.tag("assistant_tag"): "assistant",
        attr.tag("observation_tag"): "observation",
        attr.tag("function_tag"): "function",
        attr.tag("system_tag"): "system",
    }
    system = _text(row.get(attr.column("system")), "system") if attr.column("system") else ""
    messages = []
    for number, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict) or role_tag not in turn:
            raise RowError(f"message {number} has no {role_tag!r} key")
        role = roles.get(turn[role_tag])
        if role is None:
            raise RowError(f"message {number} has role {turn[role_tag]!r}; expected one of {', '.join(roles)}")
        if role == "assistant" and turn.get("tool_calls"):  # openai-style tool calls
            for call in turn["tool_calls"]:
                fn = call.get("function", call)
                args = fn.get("arguments", {})
                args = json.loads(args) if isinstance(args, str) else args
                messages.append(
                    {"role": "function", "content": json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False)}
                )
            continue
        content = turn.get(content_tag)
        content = _json_text(content, f"message {number}") if role == "function" else _text(content, f"message {number}")
        if role == "system":
            if messages:
                raise RowError(f"message {number} is a system message after the conversation started")
            system = content
            continue
        messages.append({"role": role, "content": content})
    # A tool call followed by several results is one observation turn for the template.
    merged: list[dict] = []
    for message in messages:
        if merged and merged[-1]["role"] == message["role"] == "observation":
            merged[-1] = {"role": "observation", "content": merged[-1]["content"] + "\n" + message["content"]}
        else:
            merged.append(message)
    messages = merged
    if len(messages) % 2:
        if messages[-1]["role"] in ("user", "observation"):
            raise RowError("the conversation ends with a prompt and no response")
        raise RowError("roles do not alternate between user/observation and assistant/function")
    for index, message in enumerate(messages):
        expected = ("user", "observation") if index % 2 == 0 else ("assistant", "function")
        if message["role"] not in expected:
            raise RowError(
                f"message {index + 1} is {message['role']!r} where {' or '.join(expected)} was expected "
                "(roles must alternate)"
            )
    tools = _json_text(row.get(attr.column("tools")), "tools") if attr.column("tools") else ""
    return {"messages": messages, "system": system, "tools": tools}


def pretraining_text(row: dict, attr: DatasetAttr) -> dict:
    name = attr.columns.get("prompt", "text")
    if name not in row:
        raise RowError(f"column {name!r} (text) is missing; the row has {', '.join(row) or 'no columns'}")
    text = _text(row[name], "text")
    if not text.strip():
        raise RowError("the text is empty")
    return {"text": text}


def converter(attr: DatasetAttr, stage: str):
    if stage == "pt":
        return pretraining_text
    return alpaca if attr.formatting == "alpaca" else sharegpt
