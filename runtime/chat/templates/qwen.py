"""Qwen (Alibaba): Qwen2/2.5, Qwen3 (hybrid), Qwen3-2507 instruct (qwen3_nothink) and thinking (qwen3_thinking)."""

from dataclasses import dataclass

from .base import ChatTemplate, ReasoningTemplate, register
from .generic import CHATML
from .jinja import generation_opening_jinja, jinja_str

_QWEN_TOOLS = dict(
    observation="<|im_start|>user\n<tool_response>\n{content}\n</tool_response><|im_end|>\n",
    function="<tool_call>\n{content}\n</tool_call>",
    tools=(
        "{system}\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{content}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
        "</tool_call>"
    ),
)

register(
    ChatTemplate(
        name="qwen",
        **CHATML,
        **_QWEN_TOOLS,
        default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
        notes="Qwen2/2.5 instruct. Tool calls render as <tool_call> blocks; observations as <tool_response>.",
    ),
    ReasoningTemplate(
        name="qwen3",
        **CHATML,
        **_QWEN_TOOLS,
        tools_without_system=_QWEN_TOOLS["tools"].removeprefix("{system}\n\n"),
        notes=(
            "Qwen3 (hybrid thinking): responses after the last user query carry a <think> block (empty when "
            "there is no reasoning), earlier ones drop it, as the official template does."
        ),
    ),
)

# Vision-language variants: their family's text format; ffc.runtime.chat.vision expands the <image> marks.
register(
    ChatTemplate(
        name="qwen2_vl",
        **CHATML,
        **_QWEN_TOOLS,
        default_system="You are a helpful assistant.",
        notes=(
            "Qwen2-VL and Qwen2.5-VL instruct (images): <image> in a prompt becomes "
            "<|vision_start|><|image_pad|>...<|vision_end|> with the processor's token count."
        ),
    ),
    ChatTemplate(
        name="qwen3_vl",
        **CHATML,
        **_QWEN_TOOLS,
        notes=(
            "Qwen3-VL instruct (images), no default system prompt; with tools and no system prompt the official "
            "template starts the system turn with '# Tools', ffc with a blank line before it."
        ),
    ),
)


@dataclass(frozen=True)
class OpenThinkTemplate(ReasoningTemplate):
    """Qwen3 thinking-2507: the generation prompt itself opens ``<think>\n`` (whatever enable_thinking says).

    The model never writes that opening, so in a response carrying a think block it belongs to the
    prompt (untrained); the rest of the block and the answer are the response.
    """

    def response_parts(self, content, message, index, count, last_query, enable_thinking):
        opening, body = super().response_parts(content, message, index, count, last_query, enable_thinking)
        if not opening and body.startswith(self.think_open):
            return self.think_open, body[len(self.think_open) :]
        return opening, body

    def generation_opening(self, enable_thinking) -> str:
        return self.think_open


@generation_opening_jinja.register
def _(t: OpenThinkTemplate) -> str:
    return jinja_str(t.think_open)


register(
    ChatTemplate(
        name="qwen3_nothink",
        **CHATML,
        **_QWEN_TOOLS,
        tools_without_system=_QWEN_TOOLS["tools"].removeprefix("{system}\n\n"),
        notes=(
            "Qwen3 instruct-2507 (LLaMA-Factory's qwen3_nothink): ChatML with Qwen3's tool format and no <think> "
            "blocks; reasoning in the data is not rendered by the official template (use qwen3 or qwen3_thinking)."
        ),
    ),
    OpenThinkTemplate(
        name="qwen3_thinking",
        **CHATML,
        **_QWEN_TOOLS,
        tools_without_system=_QWEN_TOOLS["tools"].removeprefix("{system}\n\n"),
        notes=(
            "Qwen3 thinking-2507: as qwen3, but the generation prompt always opens <think> (thinking cannot be "
            "turned off), so that opening is prompt, not trained, in responses that carry a think block."
        ),
    ),
)
