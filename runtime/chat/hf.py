"""``template: tokenizer``: render with the chat template saved with the model's tokenizer.

A Jinja template does not say which characters are the assistant's, so responses
are found by rendering growing prefixes of the conversation: the text the
template adds for message ``k`` (after the generation prompt) is response ``k``.
Where a template rewrites earlier turns (some drop old reasoning) the prefix
property fails; such conversations are rejected with a clear reason rather than
masked wrongly.
"""

from __future__ import annotations

from .templates import ConversationError, Rendered, Segment
from .templates.base import tool_calls_of, tool_results_of


class TokenizerTemplate:
    name = "tokenizer"
    add_bos_token = False  # hub templates write BOS themselves where the model needs it

    def __init__(self, tokenizer):
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat_template: choose a template in data.template")
        self.tokenizer = tokenizer

    def _text(self, messages, tools, add_generation_prompt: bool, **kwargs) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
        )

    def render(
        self, messages, *, bos="", eos="", system=None, tools=None, add_generation_prompt=False, enable_thinking=True
    ):
        messages = [dict(m) for m in messages]
        if system and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": system})
        # several results of one turn's calls (ffc keeps them as one observation): one tool message each
        messages = [
            {"role": "tool", "content": result} if m["role"] == "observation" else self._hub_role(m)
            for m in messages
            for result in (tool_results_of(m["content"]) if m["role"] == "observation" else [None])
        ]
        tools = self._tools(tools)
        extra = {"enable_thinking": enable_thinking}
        if add_generation_prompt:
            return Rendered([Segment(self._text(messages, tools, True, **extra), "prompt", 0)])
        full = self._text(messages, tools, False, **extra)
        segments, done, turn = [], 0, 0
        for k, message in enumerate(messages):
            if message["role"] != "assistant" or k == 0:
                continue
            prompt = self._text(messages[:k], tools, True, **extra)
            upto = self._text(messages[: k + 1], tools, False, **extra)
            if not (
                full.startswith(prompt) and full.startswith(upto) and len(prompt) >= done and len(upto) > len(prompt)
            ):
                raise ConversationError(
                    "the tokenizer's chat template rewrites earlier turns, so responses cannot be located: "
                    "choose a template in data.template"
                )
            segments.append(Segment(full[done : len(prompt)], "prompt", turn))
            segments.append(Segment(full[len(prompt) : len(upto)], "response", turn))
            done, turn = len(upto), turn + 1
        if not segments:
            raise ConversationError("the conversation has no assistant response")
        if done < len(full):
            segments.append(Segment(full[done:], "suffix", turn))
        return Rendered(segments)

    @staticmethod
    def _hub_role(message: dict) -> dict:
        # ffc's roles -> the OpenAI-style roles hub templates expect.
        role = message["role"]
        if role == "observation":
            return {"role": "tool", "content": message["content"]}
        if role == "function":  # one turn's calls, with the text and reasoning written beside them
            text, reasoning, calls = tool_calls_of(message["content"])
            hub = {
                "role": "assistant",
                "content": text,
                "tool_calls": [  # OpenAI's form: the id beside the function (Mistral's templates read it)
                    {"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                    | ({"id": c["id"]} if "id" in c else {})
                    for c in calls
                ],
            }
            return {**hub, "reasoning_content": reasoning} if reasoning else hub
        return message

    @staticmethod
    def _tools(tools):
        if not tools:
            return None
        import json

        parsed = json.loads(tools) if isinstance(tools, str) else tools
        return [t if "function" in t else {"type": "function", "function": t} for t in parsed]

    def stop_strings(self, eos):
        return [eos] if eos else []
