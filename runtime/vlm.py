"""Vision-language models: their image processor, which parts train, and what LoRA adapts.

Only multimodal runs import this (the build decides). Names of the options are LLaMA-Factory's
(``freeze_vision_tower``, ``freeze_multi_modal_projector``, ``freeze_language_model``,
``train_mm_proj_only``, ``image_max_pixels``, ``image_min_pixels``).
"""

from __future__ import annotations

import logging
from typing import Optional

from .errors import UserError

log = logging.getLogger("ffc.vlm")

# Attribute paths of each part, per family (transformers' layout; several joined by commas): the vision
# encoder, the projector that maps its features into the language model, and the language model.
# Qwen2-VL's merger is its projector and lives inside the vision tower (Qwen3-VL adds deepstack mergers).
PARTS = {
    "qwen2_vl": {"vision_tower": "model.visual", "projector": "model.visual.merger", "language_model": "model.language_model"},
    "qwen2_5_vl": {"vision_tower": "model.visual", "projector": "model.visual.merger", "language_model": "model.language_model"},
    "qwen3_vl": {"vision_tower": "model.visual", "projector": "model.visual.merger,model.visual.deepstack_merger_list", "language_model": "model.language_model"},
}  # fmt: skip


def load_image_processor(model_path: str, *, max_pixels: Optional[int], min_pixels: Optional[int], **kwargs):
    """The model's image processor with the run's pixel bounds (None: as saved). The PIL backend: the same
    pixels and token counts with or without torchvision installed (the torchvision one resizes differently)."""
    from transformers import AutoImageProcessor

    bounds = {key: value for key, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if value}
    return AutoImageProcessor.from_pretrained(model_path, backend="pil", **bounds, **kwargs)


def _part(model, path: str):
    module = model
    for name in path.split("."):
        module = getattr(module, name, None)
        if module is None:
            return None
    return module


def parts_of(model) -> dict:
    """{part name: its modules} of a vision-language model, or a UserError naming its type."""
    model_type = getattr(model.config, "model_type", "")
    paths = PARTS.get(model_type)
    if paths is None:
        raise UserError(
            f"ffc does not know the parts of {model_type or type(model).__name__} models (vision tower, projector, "
            f"language model); supported: {', '.join(PARTS)}. Choose one of those models."
        )
    return {
        name: [m for m in (_part(model, p) for p in path.split(",")) if m is not None] for name, path in paths.items()
    }


def freeze_parts(
    model,
    *,
    freeze_vision_tower: bool = True,
    freeze_multi_modal_projector: bool = True,
    freeze_language_model: bool = False,
    train_mm_proj_only: bool = False,
) -> None:
    """Switch off gradients of the parts that stay fixed (full and freeze tuning; LoRA freezes the base itself).

    The projector can be trained while the rest of the vision tower is frozen (it is unfrozen after)."""
    parts = parts_of(model)
    if train_mm_proj_only:
        freeze_vision_tower, freeze_multi_modal_projector, freeze_language_model = True, False, True
    plan = [
        ("vision_tower", freeze_vision_tower),
        ("language_model", freeze_language_model),
        ("projector", freeze_multi_modal_projector),
    ]
    for name, frozen in plan:
        for module in parts[name]:
            for parameter in module.parameters():
                parameter.requires_grad_(not frozen)
    if freeze_language_model:
        for parameter in model.lm_head.parameters():
            parameter.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("trainable parameters: %d of %d", trainable, sum(p.numel() for p in model.parameters()))


def lora_targets(model, names: Optional[list[str]] = None) -> list[str]:
    """Full names of the linear layers LoRA adapts: those of the language model (``all``), or those whose
    last name part is in ``names``. The vision tower and projector are left out unless named by path."""
    import torch

    parts = parts_of(model)
    excluded = [module for key, modules in parts.items() if key != "language_model" for module in modules]
    skip = {id(m) for part in excluded for m in part.modules()}
    targets = []
    for full, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or id(module) in skip or full.endswith("lm_head"):
            continue
        if names is None or full.rsplit(".", 1)[-1] in names:
            targets.append(full)
    if not targets:
        raise UserError(f"no linear layer of the language model matches method.lora_target {names}; check the names")
    return targets


def merge_and_save_vlm(
    model_path: str,
    adapter_path: Optional[str],
    export_dir,
    *,
    processor_dir: str,
    dtype: str = "bfloat16",
    shard_gb: float = 5,
    default_system: Optional[str] = None,
):
    """Base (+ adapter, merged) -> ``export_dir``, with the tokenizer and the image processor the run
    trained with, so that ``AutoProcessor`` and ``AutoModelForImageTextToText`` (and vLLM) load it.

    The chat template saved is the model's own processor template, which renders image content parts
    (``{"type": "image"}``) as the processor expects; for qwen2_vl its text rendering is the one ffc
    trains with (tests/test_vision.py checks both against the official template). The run's
    ``default_system`` goes in front of it (``with_default_system``), as training rendered it.
    transformers' Qwen2-VL ``AutoProcessor`` also builds the video processor, which needs torchvision."""
    from pathlib import Path

    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    model = AutoModelForImageTextToText.from_pretrained(model_path, dtype=torch.float32)
    if adapter_path:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path).merge_and_unload()
    model = model.to(getattr(torch, dtype))
    tokenizer = AutoTokenizer.from_pretrained(adapter_path or model_path)
    official = AutoTokenizer.from_pretrained(model_path).chat_template
    if official:
        tokenizer.chat_template = with_default_system(official, default_system)
    export_dir = Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(export_dir, max_shard_size=f"{max(1, round(shard_gb * 1_000_000))}KB")
    tokenizer.save_pretrained(export_dir)
    load_image_processor(processor_dir, max_pixels=None, min_pixels=None).save_pretrained(export_dir)
    return model, tokenizer


def with_default_system(chat_template: str, system: Optional[str]) -> str:
    """``chat_template`` (a model's own Jinja template) that adds ``system`` as the first message when a
    conversation has none: the default system prompt the run trained with. Unchanged when ``system`` is empty."""
    if not system:
        return chat_template
    from .chat.templates.jinja import jinja_str

    prefix = (
        "{%- if not messages or messages[0]['role'] != 'system' -%}"
        f"{{%- set messages = [{{'role': 'system', 'content': {jinja_str(system)}}}] + messages -%}}"
        "{%- endif -%}"
    )
    return prefix + chat_template
