"""MiniCPM (OpenBMB): MiniCPM4."""

from .base import ChatTemplate, register
from .generic import CHATML

register(
    ChatTemplate(
        name="cpm4",
        **CHATML,
        add_bos_token=True,
        notes=(
            "MiniCPM4 (0.5B, 8B): ChatML; the official template writes no BOS, its tokenizer adds one "
            "(add_bos_token), so tokenization prepends it."
        ),
    ),
)
