"""``ffc import``: a LLaMA-Factory YAML config becomes an ffc spec.

LLaMA-Factory configs are flat (``learning_rate: 1e-4`` next to ``dataset: ...``); ffc specs group
the same keys (mostly under the same names) by section. Each source key is either moved to its
section, translated (stage spellings, ``pref_loss: orpo``, ``flash_attn``, DeepSpeed JSON files),
dropped with the reason it has no effect in ffc, or reported as an error naming the missing feature:
nothing is left out silently. End-of-line comments of the source travel with their keys (ruamel's
round-trip document), so the ``# choices: ...`` notes of LLaMA-Factory's examples survive.

Relative paths in LLaMA-Factory configs are relative to the directory ``llamafactory-cli`` runs in
(``--lf-root``); those of an ffc spec to the spec file, so paths that exist are rewritten.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional, get_args

from pydantic import BaseModel
from ruamel.yaml.comments import CommentedMap

from ffc.schemas.spec import Spec

# Sections of the spec in the order a spec file lists them.
SECTIONS = ("model", "method", "data", "training", "logging", "distributed", "inference", "serve", "eval", "export")

# Keys that mean something in LLaMA-Factory but change nothing in ffc: dropped, with the reason.
DROPPED = {
    "do_train": "train.py always trains (chat.py, serve.py, eval.py and export.py are the other commands)",
    "do_eval": "ffc evaluates during training whenever there is evaluation data (eval_dataset or val_size)",
    "overwrite_output_dir": "a run directory's output_dir is its own; resume with `bash launch.sh --resume`",
    "overwrite_cache": "ffc tokenises each run's data afresh; there is no preprocessing cache to overwrite",
    "ddp_timeout": "ffc keeps torch's default process-group timeout (LLaMA-Factory raises it for long tokenisation)",
    "save_only_model": "ffc's checkpoints always hold the optimizer state, so that --resume continues exactly",
    "use_fast_tokenizer": "transformers loads the fast tokenizer whenever the model has one",
    "print_param_status": "train.py prints the trainable parameter count",
    "predict_with_generate": "eval.py generates for its predict_dataset (BLEU-4/ROUGE) by itself",
    "hf_hub_token": "put the token in the HF_TOKEN environment variable: specs are kept free of secrets",
    "om_hub_token": "log in with openmind's own login where the run starts: specs are kept free of secrets",
    "ms_hub_token": "log in with `modelscope login` where the run starts: specs are kept free of secrets",
    "swanlab_api_key": "put the key in the SWANLAB_API_KEY environment variable: specs are kept free of secrets",
    "plot_loss_steps": "ffc plots every logged step",
    "dataloader_drop_last": "ffc keeps the Trainer's default",
}

# Keys that ffc spells differently or that carry another value: LF name -> ffc dotted name.
RENAMED = {
    "flash_attn": "model.attn_implementation",
    "disable_gradient_checkpointing": "training.gradient_checkpointing",
    "neat_packing": "data.packing",
    "save_dir": "eval.output_dir",
    "vllm_maxlen": "inference.vllm_max_model_len",
    "vllm_gpu_util": "inference.vllm_gpu_memory_utilization",
}
# Keys of LLaMA-Factory's inference, export and evaluation configs (no training: an ffc spec of stage none) that
# move elsewhere than in a training config: what `llamafactory-cli train` with do_predict evaluates is eval.py's.
NOT_TRAINING_RENAMED = {
    "output_dir": "eval.output_dir",
    "eval_dataset": "eval.predict_dataset",
    "max_samples": "eval.max_samples",
    "per_device_eval_batch_size": "eval.batch_size",
}
# Keys of a config without training that say nothing more in ffc.
NOT_TRAINING_DROPPED = {
    "stage": "a config without training becomes a stage none run (chat.py, serve.py, eval.py, export.py)",
    "do_predict": "eval.py generates for eval.predict_dataset and scores BLEU-4/ROUGE",
    "finetuning_type": "chat, serve, eval and export read each adapter's kind from its adapter_config.json",
}
# Sections whose options mean nothing without training.
TRAINING_SECTIONS = ("method", "training", "logging", "distributed")
FLASH_ATTN = {"auto": "auto", "sdpa": "sdpa", "fa2": "flash_attention_2", "disabled": "eager"}

# LLaMA-Factory template names whose ffc name differs.
TEMPLATE_NAMES = {
    "intern2": "internlm2",
    "chatglm4": "glm4",
    "gemma2": "gemma",
}

# Features of LLaMA-Factory ffc does not have: the key names the feature in the error.
MISSING = {
    "use_unsloth": "Unsloth kernels",
    "use_galore": "GaLore",
    "use_apollo": "APOLLO",
    "use_badam": "BAdam",
    "use_llama_pro": "LLaMA Pro block expansion",
    "pissa_init": "PiSSA initialisation",
    "loraplus_lr_ratio": "LoRA+",
    "rope_scaling": "RoPE scaling",
    "shift_attn": "shift short attention",
    "mixture_of_depths": "mixture of depths",
    "tokenized_path": "saved tokenised datasets",
    "tool_format": "tool-call formats other than the chat template's own",
    "pure_bf16": "pure bf16 training (no fp32 master weights)",
    "export_quantization_bit": "quantised (GPTQ) export: use export.gguf for quantised files",
    "export_hub_model_id": "pushing the export to the Hub",
    "image_max_pixels": "multimodal models",
    "video_max_pixels": "multimodal models",
    "freeze_vision_tower": "multimodal models",
    "compute_accuracy": "token accuracy during sft evaluation",
    "swanlab_project": "SwanLab options in the spec (set the SWANLAB_PROJECT environment variable)",
    "swanlab_workspace": "SwanLab options in the spec (set the SWANLAB_WORKSPACE environment variable)",
    "swanlab_run_name": "SwanLab options in the spec (logging.run_name names the run in every tracker)",
    "swanlab_logdir": "SwanLab options in the spec (logging.offline writes its logs to output_dir/swanlog)",
    "swanlab_lark_webhook_url": "SwanLab's Lark notifications",
    "ref_model_adapters": "reference models with adapters",
    "reward_model_adapters": "reward models with adapters",
}

# Keys that could go to several sections: where a LLaMA-Factory key of that name belongs.
GENERATION = ("temperature", "top_p", "max_new_tokens")  # method for ppo/grpo, else inference
PREFERRED = {"output_dir": "training", "seed": "training", "max_samples": "data"}

# LLaMA-Factory's defaults where they differ from ffc's, written out so the run behaves the same.
LF_DEFAULTS = {"dataset_dir": "data"}


def _submodel(annotation: Any) -> Optional[type[BaseModel]]:
    """The section model of a field (``Optional[SlurmSection]`` included), or None for a value."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _field_sections() -> dict[str, list[str]]:
    """Every field name of every spec section -> the sections that have it (subsections dotted:
    ``zero_stage`` -> ``distributed.deepspeed``)."""
    owners: dict[str, list[str]] = {}

    def add(model: type[BaseModel], section: str) -> None:
        for name, info in model.model_fields.items():
            sub = _submodel(info.annotation)
            if sub is not None:
                add(sub, f"{section}.{name}")
            else:
                owners.setdefault(name, []).append(section)

    for section in SECTIONS:
        add(Spec.model_fields[section].annotation, section)
    return owners


FIELD_SECTIONS = _field_sections()
# A feature that ffc has gained is no longer missing: its key is moved like any other.
MISSING = {key: feature for key, feature in MISSING.items() if key not in FIELD_SECTIONS}


def section_of(key: str, stage: str = "sft") -> Optional[str]:
    """The section a flat (LLaMA-Factory style) key belongs to in an ffc spec, or None."""
    owners = FIELD_SECTIONS.get(key, [])
    if key in GENERATION:
        return "method" if stage in ("ppo", "grpo") else "inference"
    if key in PREFERRED:
        return PREFERRED[key]
    return owners[0] if len(owners) == 1 else None


@dataclass
class Imported:
    """The translated spec and what the translation did."""

    doc: CommentedMap
    kind: str  # train, inference, export, eval
    moved: list[tuple[str, str]] = field(default_factory=list)  # (LF key, ffc dotted key)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (LF key, reason)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (LF key, message)
    notes: list[str] = field(default_factory=list)


def _eol_comment(doc: CommentedMap, key: str) -> Optional[str]:
    """The end-of-line comment after ``key: value`` (full-line comments, LF's '### section' headers, are not
    kept: their sections no longer exist in the spec)."""
    item = doc.ca.items.get(key)
    token = item[2] if item and len(item) > 2 else None
    if token is None or not token.value.lstrip(" ").startswith("#"):
        return None
    return token.value.lstrip(" ").split("\n", 1)[0].lstrip("#").strip() or None


def _rebase(value: str, lf_root: Path, out_dir: Path, always: bool = False) -> str:
    """A path relative to LLaMA-Factory's working directory -> relative to the spec file (when it exists
    there, or ``always`` for paths such as dataset_dir that are never hub ids)."""
    if not isinstance(value, str) or os.path.isabs(value) or value.startswith("~"):
        return value
    source = lf_root / value
    if not (always or source.exists()):
        return value  # a hub id such as Qwen/Qwen2.5-0.5B
    return Path(os.path.relpath(os.path.abspath(source), os.path.abspath(out_dir))).as_posix()


# DeepSpeed settings whose value in LLaMA-Factory's JSON files is DeepSpeed's own default.
_DS_DEFAULTS = {"train_batch_size": "auto", "zero_optimization.sub_group_size": 1e9}


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def deepspeed_section(config: dict) -> tuple[Optional[dict], list[str]]:
    """LLaMA-Factory's DeepSpeed JSON -> ffc's distributed.deepspeed options, when what ffc writes for those
    options is the same configuration; else (None, the settings that differ)."""
    from .build import _deepspeed

    zero = config.get("zero_optimization") or {}
    stage = zero.get("stage", 0)
    if stage not in (0, 1, 2, 3):
        return None, [f"zero_optimization.stage={stage!r}"]

    def offloaded(name: str) -> bool:
        return (zero.get(name) or {}).get("device", "none") not in ("none", None)

    options = {"zero_stage": stage, "offload_optimizer": offloaded("offload_optimizer")}
    if stage == 3:
        options["offload_param"] = offloaded("offload_param")
    ours = _flat(_deepspeed(SimpleNamespace(distributed=SimpleNamespace(deepspeed=SimpleNamespace(
        zero_stage=stage, offload_optimizer=options["offload_optimizer"],
        offload_param=options.get("offload_param", False))))))  # fmt: skip
    theirs = _flat(config)
    differ = [
        f"{key}={value!r}"
        for key, value in theirs.items()
        if ours.get(key, _DS_DEFAULTS.get(key)) != value and not (key not in ours and value == "auto")
    ]
    differ += [f"{key} (unset)" for key, value in ours.items() if key not in theirs and value != "auto"]
    return (None, differ) if differ else (options, [])


def _set(doc: CommentedMap, dotted: str, value: Any, comment: Optional[str] = None) -> None:
    section, _, key = dotted.partition(".")
    node = doc.setdefault(section, CommentedMap())
    *parents, last = key.split(".")
    for parent in parents:
        node = node.setdefault(parent, CommentedMap())
    node[last] = value
    if comment:
        node.yaml_add_eol_comment(comment, last)


def _kind(source: dict) -> str:
    if "stage" in source or "dataset" in source or source.get("do_train") or "do_predict" in source:
        return "train" if not source.get("do_predict") or source.get("do_train") else "eval"
    if "export_dir" in source:
        return "export"
    if "task" in source:
        return "eval"
    return "inference"


def translate(source: CommentedMap, lf_root: Path, out_dir: Path, shown: str = "the config") -> Imported:
    """Translate a parsed LLaMA-Factory config (see the module docstring)."""
    result = Imported(doc=CommentedMap(), kind=_kind(source))
    trains = result.kind == "train"
    stage = str(source.get("stage", "sft")) if trains else "none"
    pref_loss = source.get("pref_loss")
    if stage == "dpo" and pref_loss in ("orpo", "simpo"):
        stage = pref_loss  # LLaMA-Factory trains ORPO and SimPO as dpo losses; ffc has a stage for each
    staged: dict[str, tuple[Any, Optional[str]]] = {}  # ffc dotted key -> (value, comment), in source order

    def put(key: str, dotted: str, value: Any) -> None:
        staged[dotted] = (value, _eol_comment(source, key))
        result.moved.append((key, dotted))

    if not trains:
        staged["method.stage"] = ("none", f"LLaMA-Factory {result.kind} config: no training")
    for variable in ("USE_MODELSCOPE_HUB", "USE_OPENMIND_HUB"):
        if os.environ.get(variable, "0").lower() in ("1", "true", "y") and variable.lower() not in source:
            # LLaMA-Factory reads the hub from the environment; the spec says it
            staged[f"model.{variable.lower()}"] = (True, f"{variable} was set when importing")
    for key, value in source.items():
        key = str(key)
        if not trains and key in NOT_TRAINING_DROPPED:
            result.dropped.append((key, NOT_TRAINING_DROPPED[key]))
        elif not trains and key in NOT_TRAINING_RENAMED and value is not None:
            put(key, NOT_TRAINING_RENAMED[key], value)
        elif key == "task":
            _import_task(str(value), source, lf_root, out_dir, put, result)
        elif key == "stage":
            put(key, "method.stage", stage)
        elif key == "pref_loss":
            if value in ("orpo", "simpo"):
                result.moved.append((key, "method.stage"))
            elif value in ("sigmoid", "hinge", "ipo"):
                put(key, "method.pref_loss", value)
            else:
                result.errors.append((key, f"pref_loss: {value} is not in ffc (sigmoid, hinge, ipo, orpo, simpo)"))
        elif value is None:
            result.dropped.append((key, "null: ffc's default applies"))
        elif key in DROPPED:
            result.dropped.append((key, DROPPED[key]))
        elif key in MISSING:
            if value in (None, False, "", 0):
                result.dropped.append((key, f"off (ffc has no {MISSING[key]})"))
            else:
                result.errors.append((key, f"ffc has no {MISSING[key]}; remove `{key}` to import the rest"))
        elif key == "template":
            name = "empty" if value == "fewshot" else TEMPLATE_NAMES.get(str(value), value)
            put(key, "data.template", name)
        elif key in ("vllm_maxlen", "vllm_gpu_util", "save_dir"):
            put(key, RENAMED[key], value)
        elif key == "adapter_name_or_path":
            paths = value.split(",") if isinstance(value, str) else list(value)
            put(key, "model.adapter_name_or_path", [_rebase(p.strip(), lf_root, out_dir) for p in paths if p.strip()])
        elif key == "report_to" and source.get("use_swanlab"):
            result.moved.append((key, "logging.report_to (with use_swanlab's swanlab)"))
        elif key in ("use_swanlab", "swanlab_mode"):
            _import_swanlab(key, value, source, put, result)
        elif key == "flash_attn":
            if value in FLASH_ATTN:
                put(key, RENAMED[key], FLASH_ATTN[value])
            else:
                result.errors.append((key, f"flash_attn: {value} is not one of {', '.join(FLASH_ATTN)}"))
        elif key == "disable_gradient_checkpointing":
            put(key, RENAMED[key], not value)
        elif key == "neat_packing":
            if value:
                put(key, RENAMED[key], True)
            else:
                result.dropped.append((key, "ffc's packing always keeps samples apart (LLaMA-Factory's neat_packing)"))
        elif key == "deepspeed":
            _import_deepspeed(value, lf_root, out_dir, staged, result)
        elif key == "top_k":
            if stage in ("ppo", "grpo"):
                if value in (0, None):
                    result.dropped.append((key, "0 is off: ffc's ppo/grpo sample with temperature and top_p only"))
                else:
                    result.errors.append((key, "ffc's ppo/grpo sample with temperature and top_p only (no top_k)"))
            else:
                put(key, "inference.top_k", value)
        elif key == "reward_model_type":
            if value in ("lora", "full"):
                result.dropped.append((key, "ffc reads the reward model's kind from its directory"))
            else:
                result.errors.append((key, f"reward_model_type: {value} (an API reward) is not in ffc"))
        elif key in ("infer_dtype", "export_device"):
            if value in ("auto", "cpu", None):
                result.dropped.append((key, "ffc loads the model in its saved dtype and merges on the CPU"))
            else:
                result.errors.append((key, f"{key}: {value} cannot be chosen in ffc"))
        elif key == "export_legacy_format":
            if value:
                result.errors.append((key, "ffc exports safetensors only (no .bin files)"))
            else:
                result.dropped.append((key, "ffc always exports safetensors"))
        elif key == "quantization_method":
            method = "bnb" if value == "bitsandbytes" else value
            choices = get_args(Spec.model_fields["model"].annotation.model_fields["quantization_method"].annotation)
            if method in choices:
                put(key, "model.quantization_method", method)
            else:
                result.errors.append((key, f"quantization_method: {value} is not in ffc ({', '.join(choices)})"))
        elif key == "infer_backend" and value not in ("huggingface", "vllm"):
            result.errors.append((key, f"infer_backend: {value} is not in ffc (huggingface, vllm)"))
        elif not trains and key == "task_dir" and "task" in source:
            pass  # read with task
        elif not trains and section_of(key, stage) in TRAINING_SECTIONS:
            result.dropped.append((key, f"a {result.kind} config trains nothing (ffc's stage none)"))
        elif (section := section_of(key, stage)) is not None:
            if key in ("model_name_or_path", "tokenizer_name_or_path", "ref_model", "reward_model", "cache_dir"):
                value = _rebase(value, lf_root, out_dir)
            elif key == "dataset_dir":
                value = _rebase(value, lf_root, out_dir, always=True)
            put(key, f"{section}.{key}", value)
        else:
            result.errors.append((key, "not a LLaMA-Factory option ffc knows: remove it or tell ffc where it goes"))

    if "data.dataset_dir" not in staged and any(
        k in staged for k in ("data.dataset", "data.eval_dataset", "eval.predict_dataset")
    ):
        # LLaMA-Factory reads datasets from ./data by default; the spec names that folder explicitly.
        staged["data.dataset_dir"] = (_rebase(LF_DEFAULTS["dataset_dir"], lf_root, out_dir, always=True), None)
    if stage in ("ppo", "grpo") and "inference.top_k" in staged:
        del staged["inference.top_k"]
    for section in SECTIONS:  # the spec's order of sections, the source's order of keys within each
        for dotted, (value, comment) in staged.items():
            if dotted.split(".", 1)[0] == section:
                _set(result.doc, dotted, value, comment)
    return result


def _import_swanlab(key: str, value: Any, source: dict, put: Callable, result: Imported) -> None:
    """LLaMA-Factory's ``use_swanlab: true`` is a tracker of report_to; ``swanlab_mode: local`` keeps it local."""
    if key == "swanlab_mode":
        if value == "local":
            put(key, "logging.offline", True)
        else:
            result.dropped.append((key, f"{value}: SwanLab's default mode"))
        return
    if not value:
        result.dropped.append((key, "off"))
        return
    targets = source.get("report_to") or []
    targets = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else list(targets)
    put(key, "logging.report_to", [t for t in targets if t != "none"] + ["swanlab"])


def _import_task(task: str, source: dict, lf_root: Path, out_dir: Path, put: Callable, result: Imported) -> None:
    """LLaMA-Factory's ``task: mmlu_test`` is the benchmark folder ``<task_dir>/mmlu`` (task_dir: ``evaluation``)
    and its split ``test``: ffc's eval.task_dir and eval.split."""
    name, _, split = task.rpartition("_")
    if not name or not split:
        result.errors.append(("task", f"task: {task} is not NAME_SPLIT (e.g. mmlu_test)"))
        return
    folder = f"{source.get('task_dir') or 'evaluation'}/{name}"
    put("task", "eval.task_dir", _rebase(folder, lf_root, out_dir, always=True))
    put("task", "eval.split", split)
    if source.get("template") == "fewshot":
        result.notes.append(
            "template: fewshot is LLaMA-Factory's plain few-shot prompt; ffc's eval.py prompts in the run's chat "
            "template: data.template is set to empty"
        )


def _import_deepspeed(value: Any, lf_root: Path, out_dir: Path, staged: dict, result: Imported) -> None:
    candidates = [lf_root / str(value), Path(str(value))]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        result.errors.append((
            "deepspeed", f"{value}: no such file under {lf_root} (give LLaMA-Factory's directory with --lf-root)"
        ))  # fmt: skip
        return
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        result.errors.append(("deepspeed", f"{path}: not a readable JSON file ({exc})"))
        return
    if not isinstance(config, dict):
        result.errors.append(("deepspeed", f"{path}: a DeepSpeed config is a JSON object"))
        return
    staged["distributed.backend"] = ("deepspeed", None)
    options, differ = deepspeed_section(config)
    if options is not None:
        for name, option in options.items():
            staged[f"distributed.deepspeed.{name}"] = (option, None)
        result.moved.append(("deepspeed", f"distributed.deepspeed ({path.name}: ZeRO-{options['zero_stage']})"))
    else:
        relative = os.path.relpath(os.path.abspath(path), os.path.abspath(out_dir))
        staged["distributed.deepspeed.config_file"] = (Path(relative).as_posix(), None)
        result.moved.append(("deepspeed", "distributed.deepspeed.config_file"))
        result.notes.append(
            f"{path.name} holds settings ffc does not write itself ({', '.join(differ[:4])}"
            f"{', ...' if len(differ) > 4 else ''}): the run uses the file as its ds_config.json"
        )


def header(imported: Imported, shown: str) -> str:
    """The comment block written above the imported spec: where it came from and what was dropped."""
    lines = [f"Imported from {shown} by `ffc import`."]
    lines += [f"dropped {key}: {reason}" for key, reason in imported.dropped]
    lines += imported.notes
    return "\n".join(lines)
