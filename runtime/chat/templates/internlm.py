"""InternLM (Shanghai AI Lab)."""

from .base import ChatTemplate, register
from .generic import CHATML

register(
    ChatTemplate(name="internlm2", prefix="{bos}", **CHATML, notes="InternLM2-chat: ChatML after BOS."),
)
