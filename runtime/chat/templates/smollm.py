"""SmolLM (Hugging Face): SmolLM2."""

from .base import ChatTemplate, register
from .generic import CHATML

register(
    ChatTemplate(
        name="smollm2",
        **CHATML,
        # As the official template writes it (no final period; LLaMA-Factory's copy adds one).
        default_system="You are a helpful AI assistant named SmolLM, trained by Hugging Face",
        notes="SmolLM2 instruct (135M, 360M, 1.7B): ChatML with SmolLM's default system prompt.",
    ),
)
