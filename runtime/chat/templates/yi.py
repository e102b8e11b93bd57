"""Yi (01.AI)."""

from .base import ChatTemplate, register
from .generic import CHATML

register(
    ChatTemplate(name="yi", **CHATML, notes="Yi-6B/34B-Chat: ChatML."),
)
