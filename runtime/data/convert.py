"""Rows of alpaca, sharegpt and openai datasets -> one message form.

A conversation is ``{"messages": [{"role", "content"}...], "system": str, "tools": str}``
with roles user, assistant, function (an assistant turn that calls tools, JSON) and
observation (a tool result). Pre-training rows become ``{"text": str}``.
One assistant turn may make several calls and write text and reasoning beside them: its
function message holds a list of calls, or ``{"content", "reasoning_content", "tool_calls"}``
(see ``ffc.runtime.chat.templates.base.tool_calls_of``). An assistant's ``reasoning_content``
(OpenAI form) joins its text as a ``<think>`` block, as LLaMA-Factory keeps reasoning.
A row that cannot be converted raises ``RowError`` with the reason; the loader adds
the file and row number. Nothing is converted behind the user's back: a number, a
boolean or a null where text belongs is a bad row, not the text "42", "True" or "".
"""

from __future__ import annotations

import json
from typing import Any, Optional

from ..chat.templates.base import ConversationError, tool_calls_of, tool_results_of
from ..errors import UserError
from .registry import DatasetAttr


class RowError(UserError, ValueError):
    pass


def describe(value: Any) -> str:
    """A value's kind in words, for messages: 'the number 42', 'a list', 'null'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _text(value: Any, what: str) -> str:
    """Optional text: null is empty, anything but a string is an error."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    hint = (
        f' (write it in quotes: "{value}")' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
    )
    raise RowError(f"{what} must be text, got {describe(value)}{hint}")


def _cell(value: Any, column: Optional[str]) -> str:
    """A column's optional text; the message's column name is only built for a bad value (this runs per row)."""
    return value if isinstance(value, str) else _text(value, repr(column))


def _json_text(value: Any, what: str) -> str:
    """Tools and tool calls may be stored as JSON text or as objects: keep them as JSON text."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError as exc:
            raise RowError(f"{what} is not valid JSON ({exc.msg} at character {exc.pos + 1})") from None
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    raise RowError(f"{what} must be JSON text, a list or an object, got {describe(value)}")


def _missing(name: str, key: str, row: dict) -> RowError:
    return RowError(f"column {name!r} ({key}) is missing; the row has {', '.join(map(repr, row)) or 'no columns'}")


def _alpaca_parts(row: dict, attr: DatasetAttr, needs_response: bool) -> tuple[list[dict], Any, str, str]:
    """(prompt messages ending with the user turn, the raw response, system, tools) of an alpaca row."""

    def col(key: str, required: bool = False) -> tuple[str, Any]:
        name = attr.column(key)
        if name and name not in row:
            if required:
                raise _missing(name, key, row)
            return name, None
        return name, (row.get(name) if name else None)

    messages = []
    name, history = col("history")
    if history is not None:
        if not isinstance(history, list):
            raise RowError(f"{name!r} must be a list of [instruction, response] pairs, got {describe(history)}")
        for number, pair in enumerate(history, start=1):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise RowError(f"{name!r} entry {number} must be an [instruction, response] pair, got {describe(pair)}")
            messages += [
                {"role": "user", "content": _text(pair[0], f"{name!r} entry {number} instruction")},
                {"role": "assistant", "content": _text(pair[1], f"{name!r} entry {number} response")},
            ]
    prompt_name, prompt = col("prompt", True)
    query_name, query = col("query")
    user = "\n".join(part for part in (_cell(prompt, prompt_name), _cell(query, query_name)) if part)
    if not user:
        raise RowError(f"{prompt_name!r} and {query_name!r} are both empty: the row has no prompt")
    messages.append({"role": "user", "content": user})
    system_name, system = col("system")
    tools_name, tools = col("tools")
    _, response = col("response", needs_response)
    tools = "" if tools is None else _json_text(tools, repr(tools_name))
    return messages, response, _cell(system, system_name), tools


class _Tags:
    """A dataset's sharegpt/openai keys and role names, looked up once per row."""

    def __init__(self, attr: DatasetAttr):
        self.role, self.content = attr.tag("role_tag"), attr.tag("content_tag")
        self.roles = {
            attr.tag("user_tag"): "user",
            attr.tag("assistant_tag"): "assistant",
            attr.tag("observation_tag"): "observation",
            attr.tag("function_tag"): "function",
            attr.tag("system_tag"): "system",
        }


def _sharegpt_turn(turn: Any, tags: _Tags, where: str) -> dict:
    if not isinstance(turn, dict):
        raise RowError(f"{where} is {describe(turn)}, not an object with {tags.role!r} and {tags.content!r} keys")
    value = turn.get(tags.role)
    if value is None:
        raise RowError(f"{where} has no {tags.role!r} key")
    role = tags.roles.get(value) if isinstance(value, str) else None
    if role is None:
        raise RowError(f"{where}: {tags.role!r} is {value!r}; expected one of {', '.join(map(repr, tags.roles))}")
    content, calls = turn.get(tags.content), turn.get("tool_calls")
    if role == "function":
        if content is None:
            raise RowError(f"{where} (a function call) has no {tags.content!r}: it needs the call as JSON")
        content = _json_text(content, where)
    elif content is None and not (role == "assistant" and calls):  # openai tool-call turns have no text
        raise RowError(f"{where} has no text: {tags.content!r} is missing or null")
    else:
        content = _text(content, f"{where} {tags.content!r}")
    reasoning = _text(turn.get("reasoning_content"), f"{where} 'reasoning_content'") if role == "assistant" else ""
    return {"role": role, "content": content, "tool_calls": calls, "reasoning": reasoning}


def _with_reasoning(content: str, reasoning: str) -> str:
    """An assistant's reasoning before its text, as the <think> block reasoning templates read."""
    return f"<think>\n{reasoning.strip(chr(10))}\n</think>\n\n{content}" if reasoning else content


def _call_message(text: str, reasoning: str, calls: list[dict]) -> dict:
    """One function message for an assistant turn's calls (the shortest form that keeps everything)."""
    if text or reasoning:
        value: Any = {"content": text, "reasoning_content": reasoning, "tool_calls": calls}
    else:
        value = calls[0] if len(calls) == 1 else calls
    return {"role": "function", "content": json.dumps(value, ensure_ascii=False)}


def _merge_calls(previous: dict, message: dict, where: str) -> dict:
    """An assistant turn written as several turns (text, then calls; or call after call) -> one turn."""
    try:
        if previous["role"] == "assistant":
            text, reasoning, calls = previous["content"], "", []
            if "</think>" in text:
                head, _, text = text.partition("</think>")
                reasoning, text = head.split("<think>")[-1].strip("\n"), text.lstrip("\n")
        else:
            text, reasoning, calls = tool_calls_of(previous["content"])
        more_text, more_reasoning, more = tool_calls_of(message["content"])
    except ConversationError as exc:
        raise RowError(f"{where}: {exc}") from None
    return _call_message(text + more_text, reasoning + more_reasoning, calls + more)


def _tool_calls(calls: Any, where: str) -> list[dict]:
    """openai-style ``tool_calls`` of an assistant turn -> its calls ({"name", "arguments"}).

    Arguments stay as the user wrote them: an object, or JSON text (OpenAI's form, checked to hold an
    object); each template writes either as its family's official template does.
    """
    if not isinstance(calls, list):
        raise RowError(f"{where}: 'tool_calls' must be a list of calls, got {describe(calls)}")
    out = []
    for number, call in enumerate(calls, start=1):
        fn = (call.get("function") or call) if isinstance(call, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if not (isinstance(name, str) and name):
            raise RowError(f"{where}: tool call {number} must be an object with a function name, got {describe(call)}")
        args = fn.get("arguments")
        decoded = args
        if isinstance(args, str):
            try:
                decoded = json.loads(args)
            except json.JSONDecodeError as exc:
                raise RowError(
                    f"{where}: tool call {number} ({name}): the arguments are not valid JSON ({exc.msg})"
                ) from None
        if args is None:
            args = decoded = {}
        if not isinstance(decoded, dict):
            raise RowError(
                f"{where}: tool call {number} ({name}): the arguments must be a JSON object, got {describe(decoded)}"
            )
        out.append({"name": name, "arguments": args})
        if isinstance(call, dict) and isinstance(call.get("id"), str) and call["id"]:
            out[-1]["id"] = call["id"]  # Mistral's templates write call ids
    return out


def _sharegpt_parts(row: dict, attr: DatasetAttr, tags: _Tags) -> tuple[list[dict], str, str]:
    """(messages with roles user/assistant/function/observation, system, tools) of a sharegpt/openai row."""
    name = attr.column("messages")
    if name not in row:
        raise _missing(name, "messages", row)
    turns = row[name]
    if not isinstance(turns, list):
        raise RowError(f"{name!r} must be a list of messages, got {describe(turns)}")
    if not turns:
        raise RowError(f"{name!r} is empty: the conversation has no messages")
    system = _text(row.get(attr.column("system")), repr(attr.column("system"))) if attr.column("system") else ""
    messages: list[dict] = []
    for number, turn in enumerate(turns, start=1):
        where = f"message {number}"
        message = _sharegpt_turn(turn, tags, where)
        calls, reasoning = message.pop("tool_calls"), message.pop("reasoning")
        if message["role"] == "assistant" and calls:
            message = _call_message(message["content"], reasoning, _tool_calls(calls, where))
        elif message["role"] == "assistant":
            message["content"] = _with_reasoning(message["content"], reasoning)
        if message["role"] == "function" and messages and messages[-1]["role"] in ("assistant", "function"):
            messages[-1] = _merge_calls(messages[-1], message, where)
        elif message["role"] == "system":
            if messages:
                raise RowError(f"{where} is a system message after the conversation started; move it to the start")
            system = message["content"]
        elif messages and messages[-1]["role"] == message["role"] == "observation":
            # The results of one turn's calls are one observation turn; each template joins them its way.
            results = tool_results_of(messages[-1]["content"]) + [message["content"]]
            messages[-1] = {"role": "observation", "content": json.dumps({"tool_results": results}, ensure_ascii=False)}
        else:
            messages.append(message)
    if not messages:
        raise RowError(f"{name!r} holds only a system message: the conversation has no turns")
    tools = _json_text(row.get(attr.column("tools")), repr(attr.column("tools"))) if attr.column("tools") else ""
    return messages, system, tools


def _check_alternation(messages: list[dict], ends_with_response: bool) -> None:
    for index, message in enumerate(messages):
        expected = ("user", "observation") if index % 2 == 0 else ("assistant", "function")
        if message["role"] not in expected:
            raise RowError(
                f"message {index + 1} is {message['role']!r} where {' or '.join(expected)} was expected "
                "(roles must alternate, starting with the user)"
            )
    if ends_with_response and len(messages) % 2:
        raise RowError("the conversation ends with a prompt and no response")
    if not ends_with_response and len(messages) % 2 == 0:
        raise RowError("the prompt must end with a user (or observation) turn")


def _conversation(row: dict, attr: DatasetAttr) -> dict:
    """A whole conversation ending with a response (sft, kto)."""
    if attr.formatting == "alpaca":
        messages, response, system, tools = _alpaca_parts(row, attr, needs_response=True)
        name = attr.column("response")
        if isinstance(response, list):
            raise RowError(f"{name!r} is a list: this looks like ranking data, which needs a preference stage")
        response = _cell(response, name)
        if not response:
            raise RowError(f"{name!r} is empty: nothing to train on")
        messages.append({"role": "assistant", "content": response})
    else:
        messages, system, tools = _sharegpt_parts(row, attr, _Tags(attr))
        _check_alternation(messages, ends_with_response=True)
    return {"messages": messages, "system": system, "tools": tools}


def sft(row: dict, attr: DatasetAttr) -> dict:
    return _conversation(row, attr)


_LABELS = {"true": True, "false": False, "1": True, "0": False}  # CSV cells are text


def kto(row: dict, attr: DatasetAttr) -> dict:
    tag = attr.column("kto_tag")
    if not tag or tag not in row:
        raise RowError(
            "KTO needs a desirability label: name its column in dataset_info.json as columns.kto_tag "
            f"(the row has {', '.join(map(repr, row))})"
        )
    value = row[tag]
    if isinstance(value, bool):
        label = value
    elif isinstance(value, (int, str)):
        label = _LABELS.get(str(value).strip().lower())
    else:
        label = None
    if label is None:
        got = repr(value) if isinstance(value, str) else describe(value)
        raise RowError(f"the label {tag!r} must be true or false, got {got}")
    return {**_conversation(row, attr), "label": label}


def _response_text(value: Any, tags: _Tags, name: str) -> str:
    if value is None:
        raise RowError(f"column {name!r} is missing or null: preference rows need a chosen and a rejected response")
    if isinstance(value, dict):  # sharegpt keeps a response as a message
        turn = _sharegpt_turn(value, tags, f"the {name!r} message")
        if turn["tool_calls"]:
            raise RowError(f"the {name!r} response makes tool calls: preference pairs need text responses")
        value = _with_reasoning(turn["content"], turn["reasoning"])
    text = _text(value, repr(name))
    if not text:
        raise RowError(f"the {name!r} response is empty")
    return text


def pairs(row: dict, attr: DatasetAttr) -> dict:
    """A prompt with a chosen and a rejected response (rm, dpo, orpo, simpo)."""
    if not attr.ranking:
        raise RowError("this stage needs preference pairs: mark the dataset ranking: true in dataset_info.json")
    chosen_col, rejected_col = attr.column("chosen") or "chosen", attr.column("rejected") or "rejected"
    tags = _Tags(attr)
    if attr.formatting == "alpaca":
        messages, response, system, tools = _alpaca_parts(row, attr, needs_response=False)
        if chosen_col not in row and isinstance(response, list) and len(response) == 2:
            chosen, rejected = response  # LLaMA-Factory's older form: output [chosen, rejected]
        else:
            chosen, rejected = row.get(chosen_col), row.get(rejected_col)
    else:
        messages, system, tools = _sharegpt_parts(row, attr, tags)
        _check_alternation(messages, ends_with_response=False)
        chosen, rejected = row.get(chosen_col), row.get(rejected_col)
    return {
        "messages": messages,
        "chosen": _response_text(chosen, tags, chosen_col),
        "rejected": _response_text(rejected, tags, rejected_col),
        "system": system,
        "tools": tools,
    }


def prompts(row: dict, attr: DatasetAttr) -> dict:
    """A prompt to generate from (ppo, grpo); a response in the row is kept as the reference ``answer``."""
    if attr.formatting == "alpaca":
        messages, response, system, tools = _alpaca_parts(row, attr, needs_response=False)
        answer = _text(response, repr(attr.column("response")))
    else:
        messages, system, tools = _sharegpt_parts(row, attr, _Tags(attr))
        answer = ""
        if messages and messages[-1]["role"] in ("assistant", "function"):
            answer = messages.pop()["content"]
        if not messages:
            raise RowError("the conversation has no prompt: it starts with the assistant's response")
        _check_alternation(messages, ends_with_response=False)
    return {"messages": messages, "answer": answer, "system": system, "tools": tools}


def pretraining_text(row: dict, attr: DatasetAttr) -> dict:
    name = attr.columns.get("prompt", "text")
    if name not in row:
        raise _missing(name, "text", row)
    text = _text(row[name], repr(name))
    if not text.strip():
        raise RowError(f"{name!r} is empty")
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
