"""Qwen (Alibaba): Qwen2/2.5, Qwen3."""

from .base import ChatTemplate, ReasoningTemplate, register
from .generic import CHATML

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
