"""spec -> validate -> resolve defaults -> render templates. Writing is ``writer``'s job."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from ffc.runtime.chat.templates import TEMPLATES

from . import render as rendering
from ._version import __version__
from .loader import LoadedSpec
from .render import Code, py_literal
from .resolve import TESTED_VERSIONS, Resolved, is_local_path, relative_to_run, resolve

RUNTIME_DIR = Path(__file__).resolve().parent.parent / "runtime"
STAGE_SUMMARY = {
    "pt": "next-token prediction on raw text (continued pre-training)",
    "sft": "next-token prediction on the assistant's responses of conversations",
    "rm": "a reward model: a score head trained so that chosen responses score above rejected ones",
    "dpo": "direct preference optimisation: raise the chosen response's likelihood over the rejected one, relative to a reference model",
    "kto": "Kahneman-Tversky optimisation: raise desirable and lower undesirable responses, relative to a reference model",
    "orpo": "odds-ratio preference optimisation: SFT on chosen responses plus an odds-ratio penalty on rejected ones, no reference model",
    "simpo": "simple preference optimisation: a length-normalised margin between chosen and rejected responses, no reference model",
    "ppo": "proximal policy optimisation: generate responses, score them, and raise the reward under a KL penalty to the reference model",
    "grpo": "group relative policy optimisation: score groups of sampled responses per prompt and favour the above-average ones",
}
STAGE_TITLES = {
    "pt": "pre-training",
    "sft": "supervised fine-tuning",
    "rm": "reward modelling",
    "dpo": "DPO",
    "kto": "KTO",
    "orpo": "ORPO",
    "simpo": "SimPO",
    "ppo": "PPO",
    "grpo": "GRPO",
}
TRAIN_TEMPLATES = {
    "pt": "train.py.j2",
    "sft": "train.py.j2",
    "rm": "train_rm.py.j2",
    "dpo": "train_pref.py.j2",
    "orpo": "train_pref.py.j2",
    "simpo": "train_pref.py.j2",
    "kto": "train_kto.py.j2",
    "ppo": "train_ppo.py.j2",
    "grpo": "train_grpo.py.j2",
}
DATA_EXPECTED = {
    "rm": "Preference pairs (dataset_info.json entries with ranking: true): a prompt with a chosen and a rejected response.",
    "dpo": "Preference pairs (dataset_info.json entries with ranking: true): a prompt with a chosen and a rejected response.",
    "orpo": "Preference pairs (dataset_info.json entries with ranking: true): a prompt with a chosen and a rejected response.",
    "simpo": "Preference pairs (dataset_info.json entries with ranking: true): a prompt with a chosen and a rejected response.",
    "kto": "Conversations with a desirability label (columns.kto_tag): the last response is desirable or not.",
    "ppo": "Prompts: conversations whose last response, if any, is ignored (kept as `answer` for reward functions).",
    "grpo": "Prompts: conversations whose last response, if any, is ignored (kept as `answer` for reward functions).",
}
DTYPES = {"float32", "bfloat16", "float16"}
# Metrics plotted at the end of training, besides the loss, per stage.
PLOT_KEYS = {
    "rm": ("loss", "accuracy", "margin", "eval_loss", "eval_accuracy"),
    "dpo": ("loss", "rewards/accuracies", "rewards/margins"),
    "kto": ("loss", "rewards/chosen", "rewards/rejected"),
    "orpo": ("loss", "rewards/accuracies", "rewards/margins"),
    "simpo": ("loss", "rewards/accuracies", "rewards/margins"),
    "grpo": ("loss", "reward", "kl"),
}


def _sh(value) -> Code:
    """A shell word: quoted so the shell reads it back unchanged."""
    import shlex

    return Code(shlex.quote(str(value)))


def _slurm(value) -> Code:
    """One #SBATCH argument (the schema restricts these to plain words)."""
    text = str(value)
    if not re.fullmatch(r"[A-Za-z0-9_.,:@%+=-]+", text):
        raise ValueError(f"{text!r} cannot be an #SBATCH argument")
    return Code(text)


def _ident(value) -> Code:
    if not (isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) and not keyword.iskeyword(value)):
        raise ValueError(f"{value!r} is not a Python identifier")
    return Code(value)


def _dtype(value) -> Code:
    if value not in DTYPES:
        raise ValueError(f"unknown dtype {value!r}")
    return Code(f"torch.{value}")


def _accelerate(spec: dict) -> dict:
    backend = spec["distributed"]["backend"]
    training = spec["training"]
    kind = {"none": "NO", "ddp": "MULTI_GPU", "deepspeed": "DEEPSPEED", "fsdp": "FSDP"}[backend]
    precision = "bf16" if training["bf16"] else "fp16" if training["fp16"] else "no"
    return {"distributed_type": kind, "mixed_precision": precision}


def _deepspeed(spec: dict) -> dict:
    """ZeRO settings; sizes the Trainer knows are left "auto" so the two cannot disagree."""
    ds = spec["distributed"]["deepspeed"]
    zero: dict = {"stage": ds["zero_stage"]}
    if ds["zero_stage"] > 0:
        zero.update(
            overlap_comm=False,
            contiguous_gradients=True,
            reduce_bucket_size="auto",
        )
    if ds["zero_stage"] == 3:
        zero.update(
            stage3_prefetch_bucket_size="auto",
            stage3_param_persistence_threshold="auto",
            stage3_max_live_parameters=1e9,
            stage3_max_reuse_distance=1e9,
            stage3_gather_16bit_weights_on_model_save=True,
        )
    if ds["offload_optimizer"]:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if ds["offload_param"]:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        # The global batch is left out: DeepSpeed derives it from these and the world size at launch.
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto", "loss_scale": 0, "loss_scale_window": 1000, "initial_scale_power": 16, "hysteresis": 2, "min_loss_scale": 1},
        "zero_optimization": zero,
    }


def _requirements(spec: dict) -> dict:
    names = ["transformers", "peft", "trl", "accelerate", "datasets", "tokenizers"]
    if spec["logging"]["plot_loss"]:
        names.append("matplotlib")
    if "tensorboard" in spec["logging"]["report_to"]:
        names.append("tensorboard")
    if spec["model"]["quantization_bit"]:
        names.append("bitsandbytes")
    if spec["distributed"]["backend"] == "deepspeed":
        names.append("deepspeed")
    return {name: TESTED_VERSIONS[name] for name in names}


def _title(spec: dict) -> str:
    method = {"lora": "LoRA", "full": "Full-parameter", "freeze": "Partially frozen"}[spec["method"]["finetuning_type"]]
    if spec["model"]["quantization_bit"]:
        method = f"QLoRA ({spec['model']['quantization_bit']}-bit)"
    stage = STAGE_TITLES[spec["method"]["stage"]]
    return f"{method} {stage} of {spec['model']['model_name_or_path']} on {', '.join(spec['data']['dataset'])}."


def context(resolved: Resolved, run_dir: Path, vendored: bool) -> dict:
    spec, loaded = resolved.spec, resolved.loaded
    model = spec["model"]
    local = is_local_path(model["model_name_or_path"], loaded.base_dir)
    model_path = relative_to_run(loaded, model["model_name_or_path"], run_dir) if local else model["model_name_or_path"]
    tokenizer = model["tokenizer_name_or_path"]
    if tokenizer is None:
        tokenizer_expr = Code("MODEL")
    elif is_local_path(tokenizer, loaded.base_dir):
        tokenizer_expr = Code(f"str(RUN_DIR / {py_literal(relative_to_run(loaded, tokenizer, run_dir))})")
    else:
        tokenizer_expr = Code(py_literal(tokenizer))
    data = spec["data"]
    ctx = dict(
        spec,
        header=lambda prefix: Code(rendering.header(prefix, loaded.sha256).strip()),
        ffc_version=__version__,
        title=_title(spec),
        stage=spec["method"]["stage"],
        stage_summary=STAGE_SUMMARY[spec["method"]["stage"]],
        lora=spec["method"]["finetuning_type"] == "lora",
        freeze=spec["method"]["finetuning_type"] == "freeze",
        quantized=bool(model["quantization_bit"]),
        deepspeed=spec["distributed"]["backend"] == "deepspeed",
        model_is_local=local,
        model_path=model_path,
        tokenizer_expr=tokenizer_expr,
        dataset_dir=relative_to_run(loaded, data["dataset_dir"], run_dir),
        has_val_split=data["val_size"] > 0,
        has_eval=data["val_size"] > 0 or bool(data["eval_dataset"]),
        upstream=resolved.upstream,
        registry_in_run=resolved.registry is not None,
        registry=resolved.registry,
        registry_note=resolved.registry_note,
        accelerate=_accelerate(spec),
        requirements=_requirements(spec),
        vendored=vendored,
        plot_keys=PLOT_KEYS.get(spec["method"]["stage"]),
        # transformers 5 takes a warm-up fraction (< 1) or a step count in one argument.
        warmup=spec["training"]["warmup_steps"] or spec["training"]["warmup_ratio"],
        data_summary=_data_summary(spec),
    )
    ctx.update(_model_paths(resolved, run_dir))
    if ctx["stage"] != "pt" and data["template"] != "tokenizer":
        template = TEMPLATES[data["template"]]
        ctx.update(
            template_name=template.name,
            template_notes=template.notes,
            template_class=type(template).__name__,
            template_fields=template.definition(),
        )
    ctx["has_template"] = "template_fields" in ctx
    dist = spec["distributed"]
    ctx["processes_per_machine"] = dist["num_processes"] // dist["num_machines"]
    ctx["uses_nccl"] = dist["backend"] != "none" or dist["num_processes"] > 1
    ctx["slurm_job_name"] = re.sub(r"[^A-Za-z0-9_.-]", "_", spec["name"])[:64] or "ffc"
    if ctx["deepspeed"]:
        ctx["deepspeed_config"] = _deepspeed(spec)
    return ctx


def _model_paths(resolved: Resolved, run_dir: Path) -> dict:
    """Reference and reward models, written like MODEL: relative to the run when local, else hub ids."""
    method, loaded, out = resolved.spec["method"], resolved.loaded, {}
    for key in ("ref_model", "reward_model"):
        value = method.get(key)
        local = bool(value) and is_local_path(value, loaded.base_dir)
        out[f"{key}_path"] = relative_to_run(loaded, value, run_dir) if local else value
        out[f"{key}_is_local"] = local
    out["reward_functions"] = resolved.reward_functions
    value = resolved.spec["inference"]["model_path"]
    local = bool(value) and is_local_path(value, loaded.base_dir)
    out["inference_model_path"] = relative_to_run(loaded, value, run_dir) if local else value
    out["inference_model_is_local"] = local
    task_dir = resolved.spec["eval"]["task_dir"]
    out["eval_task_dir"] = relative_to_run(loaded, task_dir, run_dir) if task_dir else None
    out["predict_datasets"] = resolved.spec["eval"]["predict_dataset"] or resolved.spec["data"]["eval_dataset"]
    return out


def _data_summary(spec: dict) -> str:
    data = spec["data"]
    if spec["method"]["stage"] in DATA_EXPECTED:
        return DATA_EXPECTED[spec["method"]["stage"]]
    if spec["method"]["stage"] == "pt":
        return "Raw text (a text column or .txt lines); each document ends with EOS and long ones are split into chunks."
    parts = ["Conversations (alpaca, sharegpt or openai rows, as registered in dataset_info.json)."]
    if data["train_on_prompt"]:
        parts.append("Every token is trained.")
    elif data["mask_history"]:
        parts.append("Only the last assistant turn of each conversation is trained.")
    else:
        parts.append("Every assistant turn is trained; prompts are masked.")
    return " ".join(parts)


def lock(resolved: Resolved) -> dict:
    loaded = resolved.loaded
    return {
        "ffc_version": __version__,
        "spec_file": loaded.path.name,
        "spec_sha256": loaded.sha256,
        "overrides": loaded.overrides,
        "spec": resolved.spec,
        "library_defaults": resolved.upstream,
        "library_versions": TESTED_VERSIONS,
        "inputs": {"dataset_dir": resolved.spec["data"]["dataset_dir"], "sha256": resolved.inputs},
    }


def vendored_runtime() -> dict[str, bytes]:
    """The runtime package's sources, for ``ffc build --vendor``."""
    files = {}
    for path in sorted(RUNTIME_DIR.rglob("*.py")):
        files[f"ffc/runtime/{path.relative_to(RUNTIME_DIR).as_posix()}"] = path.read_bytes()
    return files


def build_files(loaded: LoadedSpec, run_dir: Path, vendor: bool = False) -> tuple[Resolved, dict[str, bytes]]:
    """Every file of the run directory, as bytes, keyed by relative path."""
    resolved = resolve(loaded)
    ctx = context(resolved, run_dir, vendor)
    env = rendering.environment()
    env.filters.update(ident=_ident, dtype=_dtype, sh=_sh, slurm=_slurm)
    outputs = {
        "train.py": TRAIN_TEMPLATES[resolved.spec["method"]["stage"]],
        "accelerate_config.yaml": "accelerate_config.yaml.j2",
        "requirements.txt": "requirements.txt.j2",
        "launch.sh": "launch.sh.j2",
        "README.md": "README.md.j2",
        "ffc.lock.json": "ffc.lock.json.j2",
    }
    if "template_fields" in ctx:
        outputs["chat_template.py"] = "chat_template.py.j2"
    stage = resolved.spec["method"]["stage"]
    if stage != "rm":  # every other stage ends with a causal language model
        outputs["export.py"] = "export.py.j2"
        if ctx["has_template"] and stage != "pt":
            # Scripts for after training: they talk to the model through its chat template.
            outputs["chat.py"] = "chat.py.j2"
            outputs["serve.py"] = "serve.py.j2"
            outputs["eval.py"] = "eval.py.j2"
    if ctx["deepspeed"]:
        outputs["ds_config.json"] = "ds_config.json.j2"
    if resolved.spec["distributed"]["slurm"] is not None:
        outputs["slurm.sbatch"] = "slurm.sbatch.j2"
    if ctx["registry_in_run"]:
        outputs["dataset_info.json"] = "dataset_info.json.j2"
    ctx["lock"] = lock(resolved)
    files = {}
    for name, template in sorted(outputs.items()):
        text = env.get_template(template).render(**ctx)
        files[name] = (rendering.tidy_python(text) if name.endswith(".py") else text).encode("utf-8")
    files["spec.yaml"] = loaded.text.encode("utf-8")
    if resolved.reward_source is not None:
        files["rewards.py"] = resolved.reward_source
    if vendor:
        files.update(vendored_runtime())
    return resolved, files
