"""Fine-tuning methods and distributed backends: one entry each.

A method names the ``method`` options that only mean something for it (the lock
file leaves the others out, the spec's rules refuse them, the UI hides them); a
backend names what accelerate calls it and the ``distributed`` subsection it reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass(frozen=True)
class FinetuningMethod:
    name: str
    title: str  # as in the run's title: "<title> supervised fine-tuning of MODEL on DATA"
    options: tuple[str, ...] = ()
    trains_adapter: bool = False  # what train.py saves: an adapter, or the whole model


_METHODS = (
    FinetuningMethod(
        "lora", "LoRA",
        ("lora_rank", "lora_alpha", "lora_dropout", "lora_target", "additional_target", "use_dora", "use_rslora",
         "loraplus_lr_ratio", "loraplus_lr_embedding", "pissa_init", "pissa_iter", "pissa_convert", "create_new_adapter", "loftq_init"),
        trains_adapter=True,
    ),
    FinetuningMethod("oft", "OFT", ("oft_rank", "oft_block_size", "oft_target"), trains_adapter=True),
    FinetuningMethod("full", "Full-parameter"),
    FinetuningMethod("freeze", "Partially frozen", ("freeze_trainable_layers", "freeze_trainable_modules", "freeze_extra_modules", "use_llama_pro")),
)  # fmt: skip
METHODS: dict[str, FinetuningMethod] = {method.name: method for method in _METHODS}
MethodName = Literal[tuple(METHODS)]  # type: ignore[valid-type]
METHOD_OPTIONS: frozenset[str] = frozenset(name for method in _METHODS for name in method.options)


def method_owning(option: str) -> Optional[str]:
    """The fine-tuning method a method-specific option belongs to (None: it applies to every method)."""
    return next((method.name for method in _METHODS if option in method.options), None)


@dataclass(frozen=True)
class Backend:
    name: str
    accelerate_type: str  # accelerate's distributed_type
    section: Optional[str] = None  # the distributed.<section> of its own options


_BACKENDS = (
    Backend("none", "NO"),
    Backend("ddp", "MULTI_GPU"),
    Backend("deepspeed", "DEEPSPEED", "deepspeed"),
    Backend("fsdp", "FSDP", "fsdp"),
)
BACKENDS: dict[str, Backend] = {backend.name: backend for backend in _BACKENDS}
BackendName = Literal[tuple(BACKENDS)]  # type: ignore[valid-type]
BACKEND_SECTIONS: frozenset[str] = frozenset(b.section for b in _BACKENDS if b.section)
