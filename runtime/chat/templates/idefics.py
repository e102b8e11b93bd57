"""Idefics3 and SmolVLM (Hugging Face): 'User:' turns whose colon meets an opening image.

Their processor templates write ``Role:`` and a space, except where a message opens with an image
(``User:<image>...``), which the format strings of ``ChatTemplate`` cannot say: hence a small
``CustomTemplate``. Images: ffc.runtime.chat.vision (the processor expands ``<image>`` to its tiles).
"""

from dataclasses import dataclass

from .base import ConversationError, register
from .custom import CustomTemplate, Turns, jinja_head
from .jinja import jinja_str


@dataclass(frozen=True)
class IdeficsTemplate(CustomTemplate):
    def _said(self, role: str, content: str) -> str:
        return role + (":" if content.startswith("<image>") else ": ") + content + "<end_of_utterance>\n"

    def turns(self, out: Turns, messages, *, bos, eos, system, tools, add_generation_prompt, enable_thinking):
        out.prompt(self.prefix + (self._said("System", system) if system else ""))
        for message in messages:
            if message["role"] not in ("user", "assistant"):
                raise ConversationError(f"{self.name} has no {message['role']} turns (no tool format)")
            content = self._content(message)
            if message["role"] == "user":
                out.prompt(self._said("User", content))
            else:
                out.prompt("Assistant:")
                out.response(" " + content + "<end_of_utterance>")  # trained, with its leading space
                out.prompt("\n")
        if add_generation_prompt:
            out.prompt("Assistant:")

    def jinja(self, default_system: str) -> str:
        said = (
            "{%- set content = message['content'] if message['content'] is string else '' -%}"
            "{{- role + (':' if content.startswith('<image>') else ': ') + content + '<end_of_utterance>\\n' -}}"
        )
        return (
            jinja_head(default_system) + "{{- " + jinja_str(self.prefix) + " -}}"
            "{%- if system -%}{%- set message = {'content': system} -%}{%- set role = 'System' -%}"
            + said
            + "{%- endif -%}"
            "{%- for message in loop_messages -%}"
            "{%- set role = 'User' if message['role'] == 'user' else 'Assistant' -%}" + said + "{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{- 'Assistant:' -}}{%- endif -%}"
        )


register(
    IdeficsTemplate(
        name="idefics3",
        prefix="<|begin_of_text|>",
        assistant_end="<end_of_utterance>",
        stop_words=("<end_of_utterance>",),
        notes=(
            "Idefics3 (HuggingFaceM4/Idefics3-8B-Llama3), as its processor template: <|begin_of_text|>, then "
            "'User: ...<end_of_utterance>' lines ('User:<image>...' where a message opens with an image), "
            "'Assistant:' as the generation prompt; the response with its leading space and <end_of_utterance> is "
            "trained. No tool turns."
        ),
    ),
    IdeficsTemplate(
        name="smolvlm",
        prefix="<|im_start|>",
        assistant_end="<end_of_utterance>",
        stop_words=("<end_of_utterance>",),
        notes="SmolVLM-Instruct: Idefics3's format after a literal <|im_start|> (see idefics3). No tool turns.",
    ),
)
