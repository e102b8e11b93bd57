"""Vision-language models: their image processor, which parts train, and what LoRA adapts.

Only multimodal runs import this (the build decides). Names of the options are LLaMA-Factory's
(``freeze_vision_tower``, ``freeze_multi_modal_projector``, ``freeze_language_model``,
``train_mm_proj_only``, ``image_max_pixels``, ``image_min_pixels``).
"""

from __future__ import annotations

import logging
from typing import Optional

from .data.video import QwenVideoProcessor, VideoSettings
from .errors import UserError

log = logging.getLogger("ffc.vlm")

# Attribute paths of each part, per family (transformers' layout; several joined by commas): the vision
# encoder, the projector that maps its features into the language model, and the language model.
# Qwen2-VL's merger is its projector and lives inside the vision tower (Qwen3-VL adds deepstack mergers; GLM-4.1V
# alike); LLaVA, LLaVA-NeXT, Gemma 3 and InternVL share one layout, Idefics3 and SmolVLM another.
PARTS = {
    "qwen2_vl": {"vision_tower": "model.visual", "projector": "model.visual.merger", "language_model": "model.language_model"},
    "qwen2_5_vl": {"vision_tower": "model.visual", "projector": "model.visual.merger", "language_model": "model.language_model"},
    "qwen3_vl": {"vision_tower": "model.visual", "projector": "model.visual.merger,model.visual.deepstack_merger_list", "language_model": "model.language_model"},
    "glm4v": {"vision_tower": "model.visual", "projector": "model.visual.merger", "language_model": "model.language_model"},
    **{
        model_type: {"vision_tower": "model.vision_tower", "projector": "model.multi_modal_projector", "language_model": "model.language_model"}
        for model_type in ("llava", "llava_next", "gemma3", "internvl")
    },
    **{
        model_type: {"vision_tower": "model.vision_model", "projector": "model.connector", "language_model": "model.text_model"}
        for model_type in ("idefics3", "smolvlm")
    },
}  # fmt: skip


def unquantized_modules(model_types) -> list[str]:
    """Module names that 4/8-bit quantization leaves alone in models of ``model_types`` (bitsandbytes'
    ``llm_int8_skip_modules``): the vision tower and projector (small, and sensitive to quantization: QLoRA
    recipes for these models keep them in 16 bits) and the output head, which transformers' own default keeps."""
    paths = set()
    for model_type in model_types:
        for part in ("vision_tower", "projector"):
            paths.update(PARTS.get(model_type, {}).get(part, "").split(","))
    paths.discard("")
    outer = {path for path in paths if not any(path.startswith(other + ".") for other in paths)}  # Qwen's merger
    return sorted(outer) + ["lm_head"]  # full names: transformers matches them from the start of a module's name


def load_image_processor(model_path: str, *, max_pixels: Optional[int], min_pixels: Optional[int], **kwargs):
    """The model's image processor with the run's pixel bounds (None: as saved). The PIL backend: the same
    pixels and token counts with or without torchvision installed (the torchvision one resizes differently)."""
    from transformers import AutoImageProcessor

    bounds = {key: value for key, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if value}
    return AutoImageProcessor.from_pretrained(model_path, backend="pil", **bounds, **kwargs)


VIDEO_CONFIG = "video_preprocessor_config.json"  # transformers' name for a video processor's settings
PROCESSOR_PARTS = ("image_processor", "video_processor", "tokenizer", "audio_processor", "feature_extractor")


def load_processor(
    model_path: str,
    tokenizer,
    *,
    max_pixels: Optional[int],
    min_pixels: Optional[int],
    video: Optional[VideoSettings] = None,
    **kwargs,
):
    """The model family's own transformers processor (``LlavaProcessor``, ``Gemma3Processor``, ...) around the
    PIL image processor and ``tokenizer``: ffc asks it how each image is written in the text (see
    ffc.runtime.data.multimodal.MediaTokens). Its class comes from processor_config.json or the model type,
    its settings (LLaVA's patch_size, ...) from processor_config.json.

    Assembled here rather than by ``AutoProcessor``: that also loads the video processor, which needs
    torchvision (an image run does not), and transformers' argument check fails without torchvision. Runs
    with videos (``video``: their sampling settings) get ffc's ``QwenVideoProcessor`` instead."""
    import json

    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES
    from transformers.utils import cached_file

    hub = {key: value for key, value in kwargs.items() if key == "revision"}
    path = cached_file(model_path, "processor_config.json", _raise_exceptions_for_missing_entries=False, **hub)
    settings = json.loads(open(path, encoding="utf-8").read()) if path else {}
    name = settings.get("processor_class")
    if not name:
        model_type = AutoConfig.from_pretrained(model_path, **kwargs).model_type
        name = PROCESSOR_MAPPING_NAMES.get(model_type)
        if not name:
            raise UserError(
                f"transformers has no processor for {model_type} models: ffc cannot tell how images are written"
            )
    cls = getattr(transformers, name, None)
    if cls is None:
        raise UserError(f"{model_path} names processor {name}, which this transformers does not have (remote code?)")
    image_processor = load_image_processor(model_path, max_pixels=max_pixels, min_pixels=min_pixels, **kwargs)
    video_processor = None
    if video is not None:
        if not hasattr(image_processor, "temporal_patch_size"):
            raise UserError(
                f"{model_path} is not a Qwen-VL model ({type(image_processor).__name__}): ffc reads videos with "
                "Qwen2-VL, Qwen2.5-VL and Qwen3-VL models only"
            )
        video_processor = QwenVideoProcessor(image_processor, video)
    return assemble_processor(cls, image_processor, tokenizer, video_processor=video_processor, **settings)


def assemble_processor(cls, image_processor, tokenizer, video_processor=None, **settings):
    """A processor of class ``cls`` from its image processor and tokenizer (and ``video_processor``: ffc's
    ``QwenVideoProcessor`` for video runs, else none), with those of ``settings`` its constructor takes."""
    import inspect

    accepted = inspect.signature(cls.__init__).parameters
    given = {k: v for k, v in settings.items() if k in accepted and k not in PROCESSOR_PARTS and k != "chat_template"}
    processor = cls.__new__(cls)
    processor.check_argument_for_proper_class = lambda name, value: None  # see load_processor: parts chosen here
    parts = {"video_processor": video_processor} if "video_processor" in accepted else {}
    cls.__init__(processor, image_processor=image_processor, tokenizer=tokenizer, **parts, **given)
    return processor


def save_processor(processor, folder) -> None:
    """The image processor and the processor's settings (processor_config.json), so that ``load_processor``
    (chat, serve, export) rebuilds the same processor from ``folder``; a video run's frame settings too, in
    transformers' format (chat and serve read theirs from the run's ``VIDEO``)."""
    import json
    from pathlib import Path

    processor.image_processor.save_pretrained(folder)
    video = getattr(processor, "video_processor", None)
    settings = {k: v for k, v in processor.to_dict().items() if k not in PROCESSOR_PARTS and k != "chat_template"}
    Path(folder, "processor_config.json").write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    if isinstance(video, QwenVideoProcessor):
        config = video.transformers_config(type(processor).__name__)
        Path(folder, VIDEO_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


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
    for name in ("processor_config.json", VIDEO_CONFIG):  # the processor's own settings (LLaVA's patch_size, ...)
        settings = Path(processor_dir, name)
        if settings.is_file():  # and a video run's frame settings, for AutoProcessor
            (export_dir / name).write_text(settings.read_text())
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
