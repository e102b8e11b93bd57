"""Model-side helpers that no library provides in the form a recipe needs."""

from __future__ import annotations

import importlib.util
import logging
import re

log = logging.getLogger("ffc.model")


def pick_attention() -> str:
    """FlashAttention-2 when it is installed and a CUDA GPU is present, else PyTorch SDPA."""
    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def freeze_layers(model, trainable_layers: int, trainable_modules: list[str], extra_modules: list[str]) -> list[str]:
    """Train only some decoder layers (the last ``n``, or with a negative ``n`` the first ``-n``).

    ``trainable_modules`` picks parts of those layers ("all", or names such as mlp, self_attn);
    ``extra_modules`` adds modules outside the decoder layers (embed_tokens, norm, lm_head).
    Returns the names of the trainable parameters.
    """
    total = model.config.num_hidden_layers
    if abs(trainable_layers) > total:
        raise ValueError(f"freeze_trainable_layers is {trainable_layers} but the model has {total} layers")
    layers = range(total - trainable_layers, total) if trainable_layers > 0 else range(-trainable_layers)
    layer_of = re.compile(r"\.layers\.(\d+)\.")
    trainable = []
    for name, param in model.named_parameters():
        match = layer_of.search(name)
        parts = name.split(".")
        if match:
            train = int(match.group(1)) in layers and (
                trainable_modules == ["all"] or any(m in parts for m in trainable_modules)
            )
        else:
            train = any(m in parts for m in extra_modules)
        param.requires_grad_(train)
        if train:
            param.data = param.data.float()  # trainable weights keep full precision for the optimizer
            trainable.append(name)
    if not trainable:
        raise ValueError("freeze settings leave no trainable parameter: check freeze_trainable_modules")
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("training layers %s: %d parameters in %d tensors", list(layers), count, len(trainable))
    return trainable
