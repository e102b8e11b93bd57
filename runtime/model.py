"""Model-side helpers that no library provides in the form a recipe needs."""

from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path
from typing import Optional, Sequence, Union

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


Adapters = Union[str, Sequence[str], None]


def adapter_list(adapters: Adapters) -> list[str]:
    """One adapter, several, or none (None, [] or the word 'none' of the scripts' --adapter) as a list."""
    if adapters is None:
        return []
    return [a for a in ([adapters] if isinstance(adapters, str) else adapters) if a and a != "none"]


def apply_adapters(model, adapters: Adapters, train_last: bool = False):
    """Existing PEFT adapters on ``model`` as LLaMA-Factory applies ``adapter_name_or_path``: each merged into
    the weights in turn; with ``train_last`` the last one stays an adapter whose weights train further."""
    from peft import PeftModel

    paths = adapter_list(adapters)
    merged, resumed = (paths[:-1], paths[-1]) if train_last and paths else (paths, None)
    for path in merged:
        model = PeftModel.from_pretrained(model, path).merge_and_unload()
        log.info("merged adapter %s", path)
    if resumed is not None:
        model = PeftModel.from_pretrained(model, resumed, is_trainable=True)
        log.info("training adapter %s further", resumed)
    return model


def tokenizer_source(model_path: str, adapters: Adapters) -> str:
    """Where the tokenizer comes from: the last adapter's folder when it holds one (a run saves its tokenizer,
    with the chat template, next to its adapter), else the model."""
    last: Optional[str] = (adapter_list(adapters) or [None])[-1]
    if last is not None and (Path(last) / "tokenizer_config.json").is_file():
        return last
    return model_path
