"""Rows of alpaca, sharegpt and openai datasets -> one message form.

A conversation is ``{"messages": [{"role", "content"}...], "system": str, "tools": str}``
with roles user, assistant, function (an assistant tool call, JSON) and
observation (a tool result). Pre-training rows become ``{"text": str}``.
A row that cannot be converted raises ``RowError`` with the reason; the loader adds
the file and row number.
"""

from __future__ import annotations

import json
from typing import Any

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


def _alpaca_parts(row: dict, attr: DatasetAttr) -> tuple[list[dict], Any, str, str]:
    """(prompt messages ending with the user turn, the raw response, system, tools) of an alpaca row."""

    def col(key: str, required: bool = False) -> Any:
        name = attr.column(key)
        if name and name not in row:
            if required:
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
    user = "\n".join(part for part in (_text(col("prompt", True), "instruction"), _text(col("query"), "input")) if part)
    if not user:
        raise RowError("the instruction and input are both empty")
    messages.append({"role": "user", "content": user})
    return messages, col("response"), _text(col("system"), "system"), _json_text(col("tools"), "tools")


def _sharegpt_turn(turn: Any, attr: DatasetAttr, number: int) -> dict:
    role_tag, content_tag = attr.tag("role_tag"), attr.tag("content_tag")
    roles = {
        attr.tag("user_tag"): "user",
        attr.tag("assistant_tag"): "assistant",
        attr.tag("observation_tag"): "observation",
        attr.tag("function_tag"): "function",
        attr.tag("system_tag"): "system",
    }
    if not isinstance(turn, dict) or role_tag not in turn:
        raise RowError(f"message {number} has no {role_tag!r} key")
    role = roles.get(turn[role_tag])
    if role is None:
        raise RowError(f"message {number} has role {turn[role_tag]!r}; expected one of {', '.join(roles)}")
    content = turn.get(content_tag)
    content = _json_text(content, f"message {number}") if role == "function" else _text(content, f"message {number}")
    return {"role": role, "content": content, "tool_calls": turn.get("tool_calls")}


def _sharegpt_parts(row: dict, attr: DatasetAttr) -> tuple[list[dict], str, str]:
    """(messages with roles user/assistant/function/observation, system, tools) of a sharegpt/openai row."""
    name = attr.column("messages")
    turns = row.get(name)
    if turns is None:
        raise RowError(f"column {name!r} (messages) is missing; the row has {', '.join(row) or 'no columns'}")
    if not isinstance(turns, list) or not turns:
        raise RowError(f"{name!r} must be a non-empty list of messages")
    system = _text(row.get(attr.column("system")), "system") if attr.column("system") else ""
    messages: list[dict] = []
    for number, turn in enumerate(turns, start=1):
        message = _sharegpt_turn(turn, attr, number)
        calls = message.pop("tool_calls")
        if message["role"] == "assistant" and calls:  # openai-style tool calls
            for call in calls:
                fn = call.get("function", call)
                args = fn.get("arguments", {})
                args = json.loads(args) if isinstance(args, str) else args
                content = json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False)
                messages.append({"role": "function", "content": content})
        elif message["role"] == "system":
            if messages:
                raise RowError(f"message {number} is a system message after the conversation started")
            system = message["content"]
        elif messages and messages[-1]["role"] == message["role"] == "observation":
            # Several tool results after one call are one observation turn for the template.
            messages[-1] = {"role": "observation", "content": messages[-1]["content"] + "\n" + message["content"]}
        else:
            messages.append(message)
    tools = _json_text(row.get(attr.column("tools")), "tools") if attr.column("tools") else ""
    return messages, system, tools


def _check_alternation(messages: list[dict], ends_with_response: bool) -> None:
    for index, message in enumerate(messages):
        expected = ("user", "observation") if index % 2 == 0 else ("assistant", "function")
        if message["role"] not in expected:
            raise RowError(
                f"message {index + 1} is {message['role']!r} where {' or '.join(expected)} was expected "
                "(roles must alternate)"
            )
    if ends_with_response and len(messages) % 2:
        raise RowError("the conversation ends with a prompt and no response")
    if not ends_with_response and len(messages) % 2 == 0:
        raise RowError("the prompt must end with a user (or observation) turn")


def _conversation(row: dict, attr: DatasetAttr) -> dict:
    """A whole conversation ending with a response (sft, kto)."""
    if attr.formatting == "alpaca":
        messages, response, system, tools = _alpaca_parts(row, attr)
        if isinstance(response, list):
            raise RowError("the output is a list: this looks like ranking data, which needs a preference stage")
        response = _text(response, "output")
        if not response:
            raise RowError("the output is empty: nothing to train on")
        messages.append({"role": "assistant", "content": response})
    else:
        messages, system, tools = _sharegpt_parts(row, attr)
        if len(messages) % 2 and messages[-1]["role"] in ("assistant", "function"):
            raise RowError("roles do not alternate between user/observation and assistant/function")
        _check_alternation(messages, ends_with_response=True)
    return {"messages": messages, "system": system, "tools": tools}


def sft(row: dict, attr: DatasetAttr) -> dict:
    return _conversation(row, attr)


def kto(row: dict, attr: DatasetAttr) -> dict:
    tag = attr.column("kto_tag")
    if not tag or tag not in row:
        raise RowError(
            "KTO needs a desirability label: name its column in dataset_info.json as columns.kto_tag "
            f"(the row has {', '.join(row)})"
        )
    if not isinstance(row[tag], (bool, int)):
        raise RowError(f"the label {tag!r} must be true or false, got {row[tag]!r}")
    return {**_conversation(row, attr), "label": bool(row[tag])}


def _response_text(value: Any, attr: DatasetAttr, what: str) -> str:
    if isinstance(value, dict):  # sharegpt keeps a response as a message
        value = _sharegpt_turn(value, attr, 0)["content"]
    text = _text(value, what)
    if not text:
        raise RowError(f"the {what} response is empty")
    return text


def pairs(row: dict, attr: DatasetAttr) -> dict:
    """A prompt with a chosen and a rejected response (rm, dpo, orpo, simpo)."""
    if not attr.ranking:
        raise RowError("this stage needs preference pairs: mark the dataset ranking: true in dataset_info.json")
    chosen_col, rejected_col = attr.column("chosen") or "chosen", attr.column("rejected") or "rejected"
    if attr.formatting == "alpaca":
        messages, response, system, tools = _alpaca_parts(row, attr)
        if chosen_col not in row and isinstance(response, list) and len(response) == 2:
            chosen, rejected = response  # LLaMA-Factory's older form: output [chosen, rejected]
        else:
            chosen, rejected = row.get(chosen_col), row.get(rejected_col)
    else:
        messages, system, tools = _sharegpt_parts(row, attr)
        _check_alternation(messages, ends_with_response=False)
        chosen, rejected = row.get(chosen_col), row.get(rejected_col)
    if chosen is None or rejected is None:
        missing = chosen_col if chosen is None else rejected_col
        raise RowError(f"column {missing!r} is missing: preference rows need a chosen and a rejected response")
    return {
        "messages": messages,
        "chosen": _response_text(chosen, attr, "chosen"),
        "rejected": _response_text(rejected, attr, "rejected"),
        "system": system,
        "tools": tools,
    }


def prompts(row: dict, attr: DatasetAttr) -> dict:
    """A prompt to generate from (ppo, grpo); a response in the row is kept as the reference ``answer``."""
    if attr.formatting == "alpaca":
        messages, response, system, tools = _alpaca_parts(row, attr)
        answer = response if isinstance(response, str) else ""
    else:
        messages, system, tools = _sharegpt_parts(row, attr)
        answer = ""
        if messages and messages[-1]["role"] in ("assistant", "function"):
            answer = messages.pop()["content"]
        _check_alternation(messages, ends_with_response=False)
    return {"messages": messages, "answer": answer, "system": system, "tools": tools}


def pretraining_text(row: dict, attr: DatasetAttr) -> dict:
    name = attr.columns.get("prompt", "text")
    if name not in row:
        raise RowError(f"column {name!r} (text) is missing; the row has {', '.join(row) or 'no columns'}")
    text = _text(row[name], "text")
    if not text.strip():
        raise RowError("the text is empty")
    return {"text": text}


# The kinds of training data (a stage names its kind in ffc.schemas.stages), and the columns rows convert to.
DATA_KINDS = {
    "text": (pretraining_text, ["text"]),
    "conversations": (sft, ["messages", "system", "tools"]),
    "kto": (kto, ["messages", "label", "system", "tools"]),
    "pairs": (pairs, ["messages", "chosen", "rejected", "system", "tools"]),
    "prompts": (prompts, ["messages", "answer", "system", "tools"]),
}


def converter(kind: str):
    """(convert function, output columns) for a kind of data."""
    return DATA_KINDS[kind]
