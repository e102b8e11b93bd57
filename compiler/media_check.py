"""Build-time checks for datasets with images and videos: what a multimodal run needs of the rest of the spec.

A dataset whose dataset_info.json entry names an ``images`` or ``videos`` column makes the run multimodal
(train.py then holds only the vision path); these checks refuse, with the dataset's name and what fits, every
combination that would otherwise drop the media or fail mid-training. Pure Python: no torch.
"""

from __future__ import annotations

import json
from typing import Mapping, Optional

from ffc.runtime.chat.vision import VISION_TEMPLATES, templates_for, video_templates
from ffc.runtime.data.media import MEDIA_KEYS

from .loader import Issue, LoadedSpec, SpecError

VISION_STAGES = ("sft", "dpo", "orpo", "simpo", "kto")
# Stages that cannot take images yet, and why (the build error says it).
VISION_REFUSED = {
    "pt": "pre-training reads plain text, which has no place for images",
    "rm": "the reward model is a sequence classifier, and transformers has no sequence-classification head for "
    "vision-language models; train it on the text, or use dpo/kto with images",
    "ppo": "PPO generates responses online, and ffc's PPO loop and reward model take text only; use dpo or kto",
    "grpo": "GRPO would generate from the images, and ffc hands TRL's GRPOTrainer pre-tokenised text prompts only; "
    "use dpo or kto",
}
VISION_METHODS = ("lora", "full")
# Why an audios column cannot be trained on (LLaMA-Factory's mllm_audio_demo has one): the build says it.
NO_AUDIO = (
    "ffc does not train on audio yet: Qwen2-Audio and Qwen2.5-Omni need an audio feature extractor and a "
    "template plugin for their audio tokens, which ffc does not have; remove the audios column (and the "
    "<audio> placeholders), or use LLaMA-Factory for audio models"
)


def media_kinds(entry: Mapping, kinds: tuple[str, ...] = MEDIA_KEYS) -> list[str]:
    """The media columns of ``kinds`` (images, videos; audios) a dataset_info.json entry names."""
    columns = entry.get("columns") if isinstance(entry, Mapping) else None
    return [key for key in kinds if isinstance(columns, Mapping) and columns.get(key)]


def media_kinds_of(registry: Optional[Mapping], names: list[str]) -> tuple[str, ...]:
    """The media kinds ("images", "videos") the run's datasets carry, in that order."""
    found = {kind for name in names for kind in media_kinds((registry or {}).get(name) or {})}
    return tuple(kind for kind in MEDIA_KEYS if kind in found)


def _local_config(loaded: LoadedSpec, model: str) -> Optional[dict]:
    """A local model's config.json; None for a hub id, or when there is none at build time."""
    try:
        data = json.loads((loaded.base_dir / model / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # the template check stands alone
    return data if isinstance(data, dict) else None


def _model_problem(config: Optional[dict], model: str, template: str) -> Optional[str]:
    """Why a local model does not fit an image run with ``template`` (None: it fits, or cannot be told here)."""
    if config is None:
        return None
    if "vision_config" not in config:
        return (
            f"model {model} has no vision input (its config.json has no vision_config); choose a vision-language "
            "model such as Qwen/Qwen2-VL-2B-Instruct"
        )
    model_type = config.get("model_type")
    plugin = VISION_TEMPLATES.get(template)
    if plugin is None or model_type in plugin.model_types:
        return None
    fits = templates_for(model_type) if isinstance(model_type, str) else []
    return (
        f"model {model} is a {model_type} model, but chat template {template!r} is for "
        f"{', '.join(plugin.model_types)} models; set data.template to "
        + (", ".join(fits) if fits else "the template of its family (ffc has none for it yet)")
    )


def check_media(loaded: LoadedSpec, spec, registry: Mapping, names: list[str]) -> None:
    """Refuse a spec whose datasets have media it cannot train on, naming the dataset and what fits."""
    where = loaded.where(("data", "dataset"))
    problems = []
    for name in names:
        if media_kinds(registry.get(name) or {}, ("audios",)):
            problems.append(f"dataset {name!r} has audios: {NO_AUDIO}")
        kinds = media_kinds(registry.get(name) or {})
        if not kinds:
            continue
        said = f"dataset {name!r} has {' and '.join(kinds)}"
        if "videos" in kinds:
            problems += _video_problems(spec, said)
        template = spec.data.template
        if template not in VISION_TEMPLATES:
            fits = ", ".join(VISION_TEMPLATES)
            problems.append(
                f"{said}, but chat template {template!r} has no image input (the images would be lost); "
                f"set data.template to one that has: {fits}"
            )
        if spec.method.stage not in VISION_STAGES:  # videos go wherever images go
            why = VISION_REFUSED.get(spec.method.stage, "it is not supported yet")
            problems.append(
                f"{said}: stage {spec.method.stage} cannot train on {' or '.join(kinds)} ({why}); "
                f"stages that can: {', '.join(VISION_STAGES)}"
            )
        if spec.method.finetuning_type not in VISION_METHODS:
            problems.append(
                f"{said}: finetuning_type {spec.method.finetuning_type} is not supported with images; "
                f"use {' or '.join(VISION_METHODS)} (freeze_vision_tower and friends choose the trained parts)"
            )
        if spec.data.packing:
            problems.append(
                f"{said}: packing with images is refused: each sample's vision tokens need its own 3-D rotary "
                "positions, which packed rows do not keep; set data.packing: false"
            )
        if spec.data.streaming:
            problems.append(f"{said}: streaming is not supported with images; set data.streaming: false")
        if spec.inference.infer_backend != "huggingface":
            problems.append(
                f"{said}: chat.py and serve.py generate with images through transformers only so far; "
                "set inference.infer_backend: huggingface"
            )
        if spec.export.gguf or spec.export.ollama:
            problems.append(
                f"{said}: GGUF export of a vision-language model is refused (ffc's GGUF writer covers the language "
                "model only and would lose the vision tower); set export.gguf: [] and convert the exported folder "
                "with llama.cpp's convert_hf_to_gguf.py and its --mmproj option"
            )
        if spec.model.use_unsloth or spec.export.export_quantization_bit:
            problems.append(
                f"{said}: use_unsloth and export_quantization_bit are generated for text-only models (Unsloth's "
                "FastLanguageModel, optimum's GPTQ of causal language models); remove them for a vision run"
            )
        model = spec.model.model_name_or_path
        problem = _model_problem(_local_config(loaded, model), model, template)
        if problem:
            problems.append(f"{said}, but {problem}")
    problems += _sharded_preference_problems(spec, registry, names)
    if problems:
        raise SpecError([Issue(where, "data.dataset", problem) for problem in problems])


def _sharded_preference_problems(spec, registry: Mapping, names: list[str]) -> list[str]:
    """ZeRO-3 and FSDP gather the vision tower's weights in every process at once: a preference batch with
    pictures on one process and without on another would leave them waiting for each other. sft's collator
    fills such batches with a blank item (VisionCollator); TRL's preference batches have no place for one yet,
    so datasets that mix media kinds, or media with text-only rows' datasets, are refused there."""
    sharded = spec.distributed.backend == "fsdp" or (
        spec.distributed.backend == "deepspeed" and spec.distributed.deepspeed.zero_stage == 3
    )
    if spec.method.stage == "sft" or not sharded:
        return []
    kinds = [tuple(media_kinds(registry.get(name) or {})) for name in names]
    if not any(kinds) or len(set(kinds)) == 1 and len(kinds[0]) == 1:
        return []
    said = ", ".join(f"{name!r} ({' and '.join(k) or 'text only'})" for name, k in zip(names, kinds))
    return [
        f"datasets {said}: with {spec.distributed.backend} sharding, every {spec.method.stage} batch must hold the "
        "same kind of media, and these mix kinds; use datasets of one media kind (all images, or all videos), or "
        "ZeRO-2 / DDP"
    ]


def _video_problems(spec, said: str) -> list[str]:
    """Why the spec cannot train on a dataset with videos ([] when it can)."""
    problems = []
    fits = video_templates()
    if spec.data.template in VISION_TEMPLATES and spec.data.template not in fits:
        problems.append(
            f"{said}, but chat template {spec.data.template!r} has no video input (ffc reads videos with the "
            f"Qwen-VL families); set data.template to {' or '.join(fits)} with a Qwen2-VL, Qwen2.5-VL or Qwen3-VL model"
        )
    return problems
