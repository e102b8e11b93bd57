"""Gemma (Google): Gemma 2/3, Gemma 3n, Gemma 4."""

import json
import re
from dataclasses import dataclass

from .base import ChatTemplate, ConversationError, json_prefix, register, tool_results_of
from .custom import JINJA_SPLIT, CustomTemplate, Turns, jinja_head, split_reasoning

_GEMMA3 = dict(
    prefix="{bos}",
    user="<start_of_turn>user\n{content}<end_of_turn>\n",
    assistant_prefix="<start_of_turn>model\n",
    assistant_end="<end_of_turn>",
    turn_sep="\n",
    system_in_first_user="{system}\n\n{content}",
    strip_messages=True,
    stop_words=("<end_of_turn>",),
)


Q = '<|"|>'  # Gemma 4's string quote token


def _value(value, escape_keys: bool = True) -> str:
    """A value in Gemma 4's argument notation: quoted strings, bare numbers, sorted keys."""
    if isinstance(value, str):
        return Q + value + Q
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(
                (Q + k + Q if escape_keys else k) + ":" + _value(v, escape_keys) for k, v in sorted(value.items())
            )
            + "}"
        )
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v, escape_keys) for v in value) + "]"
    return str(value)


def _read_value(text: str):
    """(value, rest) of the value ``text`` starts with in Gemma 4's argument notation: the inverse of ``_value``
    (keys quoted or bare). Raises ValueError where it is not that notation."""
    if text.startswith(Q):
        end = text.index(Q, len(Q))
        return text[len(Q) : end], text[end + len(Q) :]
    if text[:1] in "{[":
        close, items, rest = "}" if text[0] == "{" else "]", [], text[1:]
        while not rest.startswith(close):
            if items:
                if not rest.startswith(","):
                    raise ValueError(f"expected ',' at {rest[:20]!r}")
                rest = rest[1:]
            if close == "}":
                if rest.startswith(Q):
                    key, rest = _read_value(rest)
                else:
                    key, colon, after = rest.partition(":")
                    rest = colon + after
                if not rest.startswith(":"):
                    raise ValueError(f"expected key:value at {rest[:20]!r}")
                value, rest = _read_value(rest[1:])
                items.append((key, value))
            else:
                value, rest = _read_value(rest)
                items.append(value)
        return (dict(items) if close == "}" else items), rest[1:]
    token = re.match(r"[^,}\]]*", text).group(0)
    try:
        value = json.loads(token)
    except json.JSONDecodeError:
        value = {"None": None, "True": True, "False": False}.get(token, token)
    return value, text[len(token) :]


def _quoted_list(items) -> str:
    return "[" + ",".join(Q + str(item) + Q for item in items) + "]"


def _properties(properties: dict) -> str:
    """A JSON-schema ``properties`` object in Gemma 4's declaration notation."""
    out = []
    for key, value in sorted(properties.items()):
        if key in ("description", "type", "properties", "required", "nullable"):
            continue
        kind = str(value.get("type", "")).upper()
        fields = []
        if value.get("description"):
            fields.append("description:" + Q + value["description"] + Q)
        if kind == "STRING" and value.get("enum"):
            fields.append("enum:" + _value(value["enum"]))
        elif kind == "ARRAY" and isinstance(value.get("items"), dict) and value["items"]:
            items = []
            for item_key, item in sorted(value["items"].items()):
                if item is None:
                    continue
                if item_key == "properties":
                    items.append("properties:{" + (_properties(item) if isinstance(item, dict) else "") + "}")
                elif item_key == "required":
                    items.append("required:" + _quoted_list(item))
                elif item_key == "type":
                    items.append("type:" + _value(item.upper() if isinstance(item, str) else [t.upper() for t in item]))
                else:
                    items.append(item_key + ":" + _value(item))
            fields.append("items:{" + ",".join(items) + "}")
        if value.get("nullable"):
            fields.append("nullable:true")
        if kind == "OBJECT":
            if isinstance(value.get("properties"), dict):
                fields.append("properties:{" + _properties(value["properties"]) + "}")
            elif isinstance(value, dict):
                fields.append("properties:{" + _properties(value) + "}")
            if value.get("required"):
                fields.append("required:" + _quoted_list(value["required"]))
        fields.append("type:" + Q + kind + Q)
        out.append(key + ":{" + ",".join(fields) + "}")
    return ",".join(out)


def _declaration(tool: dict) -> str:
    """A tool definition as Gemma 4's ``declaration:name{...}``."""
    fn = tool["function"]
    text = "declaration:" + fn["name"] + "{description:" + Q + str(fn.get("description", "")) + Q
    params = fn.get("parameters")
    if params:
        text += ",parameters:{"
        if params.get("properties"):
            text += "properties:{" + _properties(params["properties"]) + "},"
        if params.get("required"):
            text += "required:" + _quoted_list(params["required"]) + ","
        if params.get("type"):
            text += "type:" + Q + str(params["type"]).upper() + Q + "}"
    if "response" in fn:
        response = fn["response"] or {}
        text += ",response:{"
        if response.get("description"):
            text += "description:" + Q + response["description"] + Q + ","
        if str(response.get("type", "")).upper() == "OBJECT":
            text += "type:" + Q + "OBJECT" + Q + "}"
    return (text + "}").strip()


def _strip_thoughts(text: str) -> str:
    """A response without reasoning: a ``<think>`` block or Gemma's ``<|channel>...<channel|>`` removed."""
    if "</think>" in text:
        text = text.partition("</think>")[2]
    parts = text.split("<channel|>")
    return "".join(part.split("<|channel>")[0] if "<|channel>" in part else part for part in parts).strip()


@dataclass(frozen=True)
class Gemma4Template(CustomTemplate):
    """Gemma 4, as its official template writes a conversation.

    A system turn holds the system prompt, the tool declarations and, with ``enable_thinking``
    True, the ``<|think|>`` marker. Responses keep no reasoning, except the thought channel of a
    turn that calls tools after the last user message. A turn that calls tools writes its calls,
    then the tool results (untrained), then its own text; the response after the results continues
    the same model turn, without a new header.
    """

    def turns(self, out: Turns, messages, *, bos, eos, system, tools, add_generation_prompt, enable_thinking):
        out.prompt(bos)
        system = system.strip()
        if enable_thinking is True or tools or system:
            marker = "<|think|>\n" if enable_thinking is True else ""
            declared = "".join("<|tool>" + _declaration(t) + "<tool|>" for t in tools)
            out.prompt("<|turn>system\n" + marker + system + declared + "<turn|>\n")
        last_query = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        pending: tuple[list[dict], str] | None = None  # the calls and text of a turn waiting for its results
        for index, message in enumerate(messages):
            role = message["role"]
            if role == "user":
                out.prompt("<|turn>user\n" + self._content(message).strip() + "<turn|>\n")
            elif role == "observation":
                calls, text = pending or ([], "")
                results = tool_results_of(self._content(message))
                if len(results) <= len(calls):  # a result answers the call at its position
                    names = [call["name"] for call in calls[: len(results)]]
                elif len({call["name"] for call in calls}) == 1:
                    names = [calls[0]["name"]] * len(results)
                else:
                    raise ConversationError(
                        f"template {self.name!r} writes a tool result under its call's name, but the turn before "
                        f"made {len(calls)} calls for {len(results)} results"
                    )
                out.prompt(
                    "".join(
                        "<|tool_response>response:" + name + "{value:" + _value(result, False) + "}<tool_response|>"
                        for name, result in zip(names, results)
                    )
                )
                if text:  # the official template writes a calling turn's own text after its results
                    out.response(text + "<turn|>")
                    out.prompt("\n")
                pending = None
            elif role == "assistant":
                after_results = index > 0 and messages[index - 1]["role"] == "observation"
                out.prompt("" if after_results else "<|turn>model\n")
                out.response(_strip_thoughts(self._content(message)) + "<turn|>")
                out.prompt("\n")
            else:
                reasoning, text, calls = split_reasoning(message)
                keep = reasoning and index > last_query and enable_thinking is not False  # False drops all reasoning
                thought = "<|channel>thought\n" + reasoning + "\n<channel|>" if keep else ""
                written = "".join(
                    "<|tool_call>call:" + c["name"] + _value(c["arguments"], False) + "<tool_call|>"
                    if isinstance(c["arguments"], dict)
                    else "<|tool_call>call:" + c["name"] + "{" + c["arguments"] + "}<tool_call|>"  # JSON text: as given
                    for c in calls
                )
                out.prompt("<|turn>model\n")
                if index == len(messages) - 1:  # no result yet: the model hands over to the tool
                    out.response(thought + written + "<|tool_response>")
                else:
                    out.response(thought + written)
                    pending = (calls, _strip_thoughts(text))
        if add_generation_prompt and messages[-1]["role"] != "observation":
            out.prompt("<|turn>model\n")

    def parse_calls(self, text, tools=None):
        """``<|tool_call>call:NAME{key:value,...}<tool_call|>`` in Gemma's argument notation (``_value``)."""
        calls = []
        for match in re.finditer(r"<\|tool_call>call:([^{<]+)(\{.*?\})<tool_call\|>", text, flags=re.S):
            arguments, rest = json_prefix(match.group(2)[1:-1])  # JSON text given as the arguments: as written
            if not isinstance(arguments, dict) or rest.strip():
                try:
                    arguments, rest = _read_value(match.group(2))
                except ValueError:
                    return text, []
            if rest or not isinstance(arguments, dict):
                return text, []
            calls.append({"name": match.group(1).strip(), "arguments": arguments})
        if not calls:
            return text, []
        return re.sub(r"<\|tool_call>.*?<tool_call\|>", "", text, flags=re.S).removesuffix(
            "<|tool_response>"
        ).strip(), calls

    def jinja(self, default_system: str) -> str:
        q = "'<|\"|>'"
        macros = (
            # a value in argument notation (g4v), a quoted list (g4q), schema properties (g4p), no thoughts (g4s)
            "{%- macro g4v(v, esc) -%}{%- if v is string -%}{{- " + q + " + v + " + q + " -}}"
            "{%- elif v is boolean -%}{{- 'true' if v else 'false' -}}"
            "{%- elif v is mapping -%}{{- '{' -}}{%- for k, x in v | dictsort -%}"
            "{{- (',' if not loop.first else '') + ((" + q + " + k + " + q + ") if esc else k) + ':' + g4v(x, esc) -}}"
            "{%- endfor -%}{{- '}' -}}"
            "{%- elif v is sequence -%}{{- '[' -}}{%- for x in v -%}{{- (',' if not loop.first else '') + g4v(x, esc) -}}"
            "{%- endfor -%}{{- ']' -}}{%- else -%}{{- v -}}{%- endif -%}{%- endmacro -%}"
            "{%- macro g4q(items) -%}{{- '[' -}}{%- for x in items -%}"
            "{{- (',' if not loop.first else '') + "
            + q
            + " + x + "
            + q
            + " -}}{%- endfor -%}{{- ']' -}}{%- endmacro -%}"
            "{%- macro g4p(props) -%}{%- set first = namespace(done=false) -%}"
            "{%- for key, value in props | dictsort -%}"
            "{%- if key not in ['description', 'type', 'properties', 'required', 'nullable'] -%}"
            "{{- ',' if first.done else '' -}}{%- set first.done = true -%}"
            "{%- set kind = (value['type'] | default('') | string | upper) -%}{%- set f = namespace(text='') -%}"
            "{%- if value['description'] -%}{%- set f.text = f.text + ',description:' + "
            + q
            + " + value['description'] + "
            + q
            + " -%}{%- endif -%}"
            "{%- if kind == 'STRING' and value['enum'] -%}{%- set f.text = f.text + ',enum:' + g4v(value['enum'], true) -%}"
            "{%- elif kind == 'ARRAY' and value['items'] is mapping and value['items'] -%}"
            "{%- set it = namespace(text='') -%}{%- for ik, iv in value['items'] | dictsort -%}{%- if iv is not none -%}"
            "{%- if ik == 'properties' -%}{%- set part = 'properties:{' + (g4p(iv) if iv is mapping else '') + '}' -%}"
            "{%- elif ik == 'required' -%}{%- set part = 'required:' + g4q(iv) -%}"
            "{%- elif ik == 'type' -%}"
            "{%- set part = 'type:' + g4v((iv | upper) if iv is string else (iv | map('upper') | list), true) -%}"
            "{%- else -%}{%- set part = ik + ':' + g4v(iv, true) -%}{%- endif -%}"
            "{%- set it.text = it.text + ',' + part -%}{%- endif -%}{%- endfor -%}"
            "{%- set f.text = f.text + ',items:{' + it.text[1:] + '}' -%}{%- endif -%}"
            "{%- if value['nullable'] -%}{%- set f.text = f.text + ',nullable:true' -%}{%- endif -%}"
            "{%- if kind == 'OBJECT' -%}"
            "{%- if value['properties'] is defined and value['properties'] is mapping -%}"
            "{%- set f.text = f.text + ',properties:{' + g4p(value['properties']) + '}' -%}"
            "{%- else -%}{%- set f.text = f.text + ',properties:{' + g4p(value) + '}' -%}{%- endif -%}"
            "{%- if value['required'] -%}{%- set f.text = f.text + ',required:' + g4q(value['required']) -%}{%- endif -%}"
            "{%- endif -%}"
            "{%- set f.text = f.text + ',type:' + " + q + " + kind + " + q + " -%}"
            "{{- key + ':{' + f.text[1:] + '}' -}}"
            "{%- endif -%}{%- endfor -%}{%- endmacro -%}"
            "{%- macro g4s(text) -%}{%- set text = (text.split('</think>')[1:] | join('</think>')) if '</think>' in text "
            "else text -%}{%- set kept = namespace(text='') -%}{%- for part in text.split('<channel|>') -%}"
            "{%- set kept.text = kept.text + (part.split('<|channel>')[0] if '<|channel>' in part else part) -%}"
            "{%- endfor -%}{{- kept.text | trim -}}{%- endmacro -%}"
        )
        declarations = (
            "{%- for tool in tools -%}"
            "{%- set entry = tool if tool['function'] is defined else {'type': 'function', 'function': tool} -%}"
            "{%- set fn = entry['function'] -%}"
            "{%- set d = namespace(text='declaration:' + fn['name'] + '{description:' + "
            + q
            + " + (fn['description'] | default('')) + "
            + q
            + ") -%}"
            "{%- set params = fn['parameters'] -%}{%- if params -%}{%- set d.text = d.text + ',parameters:{' -%}"
            "{%- if params['properties'] -%}{%- set d.text = d.text + 'properties:{' + g4p(params['properties']) + '},' -%}"
            "{%- endif -%}"
            "{%- if params['required'] -%}{%- set d.text = d.text + 'required:' + g4q(params['required']) + ',' -%}"
            "{%- endif -%}"
            "{%- if params['type'] -%}{%- set d.text = d.text + 'type:' + "
            + q
            + " + (params['type'] | upper) + "
            + q
            + " + '}' -%}{%- endif -%}{%- endif -%}"
            "{%- if fn['response'] is defined -%}{%- set d.text = d.text + ',response:{' -%}"
            "{%- if fn['response']['description'] -%}{%- set d.text = d.text + 'description:' + "
            + q
            + " + fn['response']['description'] + "
            + q
            + " + ',' -%}{%- endif -%}"
            "{%- if (fn['response']['type'] | default('') | upper) == 'OBJECT' -%}"
            "{%- set d.text = d.text + 'type:' + " + q + " + 'OBJECT' + " + q + " + '}' -%}{%- endif -%}{%- endif -%}"
            "{{- '<|tool>' + ((d.text + '}') | trim) + '<tool|>' -}}"
            "{%- endfor -%}"
        )
        return (
            macros + jinja_head(default_system) + "{{- bos -}}{%- set system = system | trim -%}"
            "{%- set thinking = enable_thinking is defined and enable_thinking is true -%}"
            "{%- if thinking or tools or system -%}"
            "{{- '<|turn>system\\n' + ('<|think|>\\n' if thinking else '') + system -}}"
            + "{%- if tools -%}"
            + declarations
            + "{%- endif -%}{{- '<turn|>\\n' -}}{%- endif -%}"
            "{%- set st = namespace(calls=[], text='', r=0) -%}"
            "{%- for message in loop_messages -%}"
            "{%- if message['role'] == 'user' -%}{{- '<|turn>user\\n' + (message['content'] | trim) + '<turn|>\\n' -}}"
            "{%- elif message['role'] in ['tool', 'observation'] -%}"
            "{%- set found = namespace(name=message['name'] if message['name'] is string else 'unknown') -%}"
            "{%- for tool_call in st.calls -%}"
            "{%- set call = tool_call['function'] if tool_call['function'] is defined else tool_call -%}"
            # without a name or id, a result answers the call at its position (as the Python renderer)
            "{%- if loop.index0 == st.r and message['name'] is not string -%}{%- set found.name = call['name'] -%}"
            "{%- endif -%}"
            "{%- if tool_call['id'] is defined and tool_call['id'] == message['tool_call_id'] -%}"
            "{%- set found.name = call['name'] -%}{%- endif -%}{%- endfor -%}"
            "{{- '<|tool_response>response:' + found.name + '{value:' + g4v(message['content'], false) "
            "+ '}<tool_response|>' -}}{%- set st.r = st.r + 1 -%}"
            "{%- if st.text and not (loop.nextitem is defined and loop.nextitem['role'] in ['tool', 'observation']) -%}"
            "{{- st.text + '<turn|>\\n' -}}{%- set st.text = '' -%}{%- endif -%}"
            "{%- elif message['tool_calls'] is defined and message['tool_calls'] -%}"
            + JINJA_SPLIT
            + "{{- '<|turn>model\\n' -}}"
            "{%- if reasoning and loop.index0 > ns.last_query and not (enable_thinking is defined and enable_thinking "
            "is false) -%}"
            "{{- '<|channel>thought\\n' + reasoning + '\\n<channel|>' -}}{%- endif -%}"
            "{%- for tool_call in calls -%}"
            "{%- set call = tool_call['function'] if tool_call['function'] is defined else tool_call -%}"
            "{{- '<|tool_call>call:' + call['name'] + (g4v(call['arguments'], false) if call['arguments'] is mapping "
            "else '{' + (call['arguments'] if call['arguments'] is string else '') + '}') + '<tool_call|>' -}}"
            "{%- endfor -%}{%- set st.calls = calls -%}{%- set st.r = 0 -%}"
            "{%- if loop.nextitem is defined and loop.nextitem['role'] in ['tool', 'observation'] -%}"
            "{%- set st.text = g4s(text) -%}"
            "{%- else -%}{{- g4s(text) + '<|tool_response>' -}}{%- endif -%}"
            "{%- else -%}"
            "{%- set after = loop.previtem is defined and loop.previtem['role'] in ['tool', 'observation'] -%}"
            "{{- ('' if after else '<|turn>model\\n') + g4s(message['content']) + '<turn|>\\n' -}}"
            "{%- endif -%}{%- endfor -%}"
            "{%- if add_generation_prompt and not (loop_messages and loop_messages[-1]['role'] in ['tool', 'observation']) "
            "-%}{{- '<|turn>model\\n' -}}{%- endif -%}"
        )


register(
    ChatTemplate(
        name="gemma",
        **_GEMMA3,
        notes="Gemma 2/3: no system role; a system prompt opens the first user turn (as Gemma 3's template does).",
    ),
    ChatTemplate(
        name="gemma3",
        **_GEMMA3,
        notes=(
            "Gemma 3 with images (LLaMA-Factory's gemma3): gemma's text format; each <image> is written "
            "<start_of_image>, as the official template writes an image part, and the processor expands it."
        ),
    ),
    ChatTemplate(
        name="gemma3n",
        **_GEMMA3,
        notes=(
            "Gemma 3n instruct: Gemma 3's text format (a system prompt opens the first user turn); images and "
            "audio are not supported by ffc yet."
        ),
    ),
    Gemma4Template(
        name="gemma4",
        tool_result_separator=None,  # each result in its own block (turns() splits them)
        tool_definitions=True,
        assistant_end="<turn|>",
        stop_words=("<turn|>", "<|tool_response>"),  # after its calls the model hands over to the tool
        notes=(
            "Gemma 4 instruct, as its official template: tool declarations in Gemma's own notation in the system "
            "turn, calls as <|tool_call>call:name{...}<tool_call|>, results as <|tool_response>...<tool_response|> "
            "inside the calling model turn, and the response after them continuing that turn. Responses keep no "
            "reasoning (reasoning_content and <think> blocks are removed, so not trained) except the thought "
            "channel before calls after the last user message (dropped with enable_thinking false, which the official "
            "template ignores); enable_thinking true adds <|think|> to the system turn. Arguments given as JSON text "
            "are written as given, as the official template does. A tool result answers the call at its position "
            "(ffc's data keeps no tool_call_id)."
        ),
    ),
)
