"""Logging for the generated scripts: one format, and no library deprecation notices the user cannot act on."""

from __future__ import annotations

import logging
import warnings

# Deprecations raised inside the pinned libraries by their own calls (not by the run's code), e.g. PEFT
# 0.21 asking transformers 5.23 for `is_gradient_checkpointing`. They would print in every training log
# although nothing in the run directory can change them; they go once the libraries catch up.
LIBRARY_DEPRECATIONS = (
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
    (FutureWarning, r"`gradient_checkpointing_enable` is deprecated"),
)


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for category, message in LIBRARY_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message, category=category)
