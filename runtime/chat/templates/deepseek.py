"""DeepSeek: V3."""

from .base import ChatTemplate, register

register(
    ChatTemplate(
        name="deepseek3",
        prefix="{bos}",
        user="<｜User｜>{content}",
        assistant_prefix="<｜Assistant｜>",
        assistant_end="<｜end▁of▁sentence｜>",
        notes="DeepSeek-V3 (R1 differs: its generation prompt opens a <think> block).",
    ),
)
