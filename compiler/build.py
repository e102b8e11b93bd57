"""spec -> validate -> resolve defaults -> render templates. Writing is ``writer``'s job."""

from __future__ import annotations

import dataclasses
import keyword
import re
from pathlib import Path
from typing import Optional

from ffc.runtime.chat.templates import TEMPLATES
from ffc.runtime.chat.vision import VISION_TEMPLATES
from ffc.runtime.vlm import unquantized_modules

from . import render as rendering
from ._version import __version__
from .loader import LoadedSpec
from .media_check import media_kinds_of
from .render import Code, py_literal
from .resolve import TESTED_VERSIONS, Resolved, is_local_path, relative_to_run, resolve
from .run_files import RUN_FILES, GeneratedFile

RUNTIME_DIR = Path(__file__).resolve().parent.parent / "runtime"
DTYPES = {"float32", "bfloat16", "float16"}


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


def _module(value) -> Code:
    """A dotted module name for an import statement (training.callbacks; the schema allows nothing else)."""
    if not (isinstance(value, str) and all(_ident(part) for part in value.split("."))):
        raise ValueError(f"{value!r} is not a module name")
    return Code(value)


def _dtype(value) -> Code:
    if value not in DTYPES:
        raise ValueError(f"unknown dtype {value!r}")
    return Code(f"torch.{value}")


def _run_path(value) -> Code:
    """A Path expression for a path the build re-expressed for the run directory (``relative_to_run``):
    relative paths hang off RUN_DIR, absolute ones stay as written, ``~`` expands on the machine that runs."""
    text = str(value)
    if text.startswith("~"):
        return Code(f"Path({py_literal(text)}).expanduser()")
    if text.startswith("/"):
        return Code(f"Path({py_literal(text)})")
    return Code(f"RUN_DIR / {py_literal(text)}")


def _deepspeed(spec) -> dict:
    """ZeRO settings; sizes the Trainer knows are left "auto" so the two cannot disagree."""
    ds = spec.distributed.deepspeed
    zero: dict = {"stage": ds.zero_stage}
    if ds.zero_stage > 0:
        zero.update(
            overlap_comm=False,
            contiguous_gradients=True,
            reduce_bucket_size="auto",
        )
    if ds.zero_stage == 3:
        zero.update(
            stage3_prefetch_bucket_size="auto",
            stage3_param_persistence_threshold="auto",
            stage3_max_live_parameters=1e9,
            stage3_max_reuse_distance=1e9,
            stage3_gather_16bit_weights_on_model_save=True,
        )
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if ds.offload_param:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        # The global batch is left out: DeepSpeed derives it from these and the world size at launch.
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": "auto"},
        "fp16": {
            "enabled": "auto",
            "loss_scale": 0,
            "loss_scale_window": 1000,
            "initial_scale_power": 16,
            "hysteresis": 2,
            "min_loss_scale": 1,
        },
        "zero_optimization": zero,
    }


# model.quantization_method values whose models are stored quantized: transformers reads their config.json.
STORED_QUANTIZATION = ("gptq", "awq", "aqlm")

# The packages the optimizer switches import (Muon and LoRA+ come with torch and PEFT).
OPTIMIZER_PACKAGES = {
    "use_galore": "galore-torch",
    "use_apollo": "apollo-torch",
    "use_badam": "badam",
    "use_adam_mini": "adam-mini",
}


def _requirements(spec, vendored: bool, videos: bool = False) -> dict:
    """Pinned distributions the generated code imports: ffc itself (its runtime) unless vendored."""
    names = ["transformers", "peft", "trl", "accelerate", "datasets", "tokenizers"]
    if videos:  # PyAV decodes the datasets' video files
        names.append("av")
    if spec.logging.plot_loss:
        names.append("matplotlib")
    if "tensorboard" in spec.logging.report_to:
        names.append("tensorboard")
    if spec.model.quantization_bit:  # hqq and eetq are not pinned here: ffc is not tested with them (no CPU kernels)
        names += {"bnb": ["bitsandbytes"], "torchao": ["torchao"]}.get(spec.model.quantization_method, [])
    if spec.distributed.backend == "deepspeed":
        names.append("deepspeed")
    if spec.model.enable_liger_kernel:
        names.append("liger-kernel")
    for switch, package in OPTIMIZER_PACKAGES.items():
        if getattr(spec.training, switch):
            names.append(package)
    if spec.export.onnx:
        names += ["onnx", "onnxruntime"]
    if spec.export.export_quantization_bit:
        names += ["optimum", "gptqmodel"]
    pins = {} if vendored else {"ffc": __version__}
    pins.update({name: TESTED_VERSIONS[name] for name in names})
    return pins


def _model_hub(model) -> Optional[str]:
    """The hub the model is downloaded from when it is not Hugging Face's (a key of ffc.runtime.hubs.HUBS)."""
    if model.use_modelscope_hub:
        return "modelscope"
    return "openmind" if model.use_openmind_hub else None


def _title(resolved: Resolved) -> str:
    spec = resolved.spec
    if not resolved.stage.trains:
        adapters = spec.model.adapter_name_or_path
        with_adapters = f" with the adapters {', '.join(adapters)}" if adapters else ""
        return f"Inference with {spec.model.model_name_or_path}{with_adapters} (no training)."
    method = resolved.finetuning.title
    if spec.model.quantization_bit:
        method = f"QLoRA ({spec.model.quantization_bit}-bit)"
    return f"{method} {resolved.stage.title} of {spec.model.model_name_or_path} on {', '.join(spec.data.dataset)}."


def _reference(loaded, value: Optional[str], run_dir: Path) -> tuple[Optional[str], bool]:
    """A model (or other) reference as the run writes it: (path for the run directory, True) when it is
    local, else (the hub id, False)."""
    if not value:
        return value, False
    if is_local_path(value, loaded.base_dir):
        return relative_to_run(loaded, value, run_dir), True
    return value, False


def context(resolved: Resolved, run_dir: Path, vendored: bool) -> dict:
    """What the file templates render from: the resolved spec's sections, the registry entries of its
    stage, method and backend, and the few values derived for code (paths as the run sees them)."""
    spec, loaded, stage = resolved.spec, resolved.loaded, resolved.stage
    model, data = spec.model, spec.data
    model_path, model_is_local = _reference(loaded, model.model_name_or_path, run_dir)
    tokenizer, tokenizer_is_local = _reference(loaded, model.tokenizer_name_or_path, run_dir)
    ref_model_path, ref_model_is_local = _reference(loaded, getattr(spec.method, "ref_model", None), run_dir)
    reward_model_path, reward_model_is_local = _reference(loaded, getattr(spec.method, "reward_model", None), run_dir)
    inference_model_path, inference_model_is_local = _reference(loaded, spec.inference.model_path, run_dir)
    has_template = stage.chat and data.template != "tokenizer"
    # model.adapter_name_or_path as (path for the run, is local); train.py merges all but the one it trains further
    existing_adapters = [_reference(loaded, path, run_dir) for path in model.adapter_name_or_path]
    resumes_adapter = stage.trains and bool(existing_adapters) and not spec.method.create_new_adapter
    # More than one process (launch.sh's NCCL settings; the vision collator's fillers)
    several_processes = spec.distributed.backend != "none" or (spec.distributed.num_processes or 1) > 1
    media = media_kinds_of(resolved.registry, [*data.dataset, *data.eval_dataset])  # from dataset_info.json
    ctx = {name: getattr(spec, name) for name in type(spec).model_fields}
    ctx.update(
        header=lambda prefix: Code(rendering.header(prefix, loaded.sha256).strip()),
        ffc_version=__version__,
        title=_title(resolved),
        stage=stage.name,
        stage_info=stage,
        trains=stage.trains,
        model_hub=None if model_is_local else _model_hub(model),
        data_hub=_model_hub(model),  # dataset_info.json's ms_hub_url / om_hub_url win, as in LLaMA-Factory
        # logging.offline: the trackers of report_to that ffc.runtime.trackers can keep local (not TensorBoard's files)
        # (PPO's own loop reports to none).
        local_trackers=[t for t in spec.logging.report_to if t not in ("none", "tensorboard")]
        if spec.logging.offline and stage.name != "ppo"
        else [],
        existing_adapters=existing_adapters,
        resumes_adapter=resumes_adapter,
        merged_adapters=existing_adapters[:-1] if resumes_adapter else existing_adapters,
        stage_summary=stage.summary,
        backend=resolved.backend,
        lora=spec.method.finetuning_type == "lora",
        freeze=spec.method.finetuning_type == "freeze",
        oft=spec.method.finetuning_type == "oft",
        adapter=resolved.finetuning.trains_adapter,  # train.py saves a PEFT adapter (LoRA or OFT)
        # QLoRA: quantized when loading (quantization_bit), or a model stored quantized (gptq, awq, aqlm)
        quantized=bool(model.quantization_bit) or model.quantization_method in STORED_QUANTIZATION,
        # A vision-language run's modules that 4/8-bit quantization leaves alone (the template names the family).
        unquantized_modules=unquantized_modules(VISION_TEMPLATES[data.template].model_types)
        if data.template in VISION_TEMPLATES
        else None,
        deepspeed=spec.distributed.backend == "deepspeed",
        model_path=model_path,
        model_is_local=model_is_local,
        tokenizer=tokenizer,
        tokenizer_is_local=tokenizer_is_local,
        ref_model_path=ref_model_path,
        ref_model_is_local=ref_model_is_local,
        reward_model_path=reward_model_path,
        reward_model_is_local=reward_model_is_local,
        inference_model_path=inference_model_path,
        inference_model_is_local=inference_model_is_local,
        reward_functions=resolved.reward_functions,
        dataset_dir=relative_to_run(loaded, data.dataset_dir, run_dir),
        eval_task_dir=relative_to_run(loaded, spec.eval.task_dir, run_dir) if spec.eval.task_dir else None,
        quantization_dataset=(  # export.py's GPTQ calibration text
            relative_to_run(loaded, spec.export.export_quantization_dataset, run_dir)
            if spec.export.export_quantization_dataset
            else None
        ),
        predict_datasets=spec.eval.predict_dataset or data.eval_dataset,
        has_val_split=data.val_size > 0,
        has_eval=data.val_size > 0 or bool(data.eval_dataset),
        upstream=dict(resolved.upstream),
        registry_in_run=resolved.registry is not None,
        registry=dict(resolved.registry) if resolved.registry is not None else None,
        registry_note=resolved.registry_note,
        accelerate={
            "distributed_type": resolved.backend.accelerate_type,
            "mixed_precision": next((name for name in ("fp8", "bf16", "fp16") if getattr(spec.training, name)), "no"),
        },
        requirements=_requirements(spec, vendored, videos="videos" in media),
        vendored=vendored,
        plot_keys=stage.plot_keys,
        # transformers 5 takes a warm-up fraction (< 1) or a step count in one argument.
        warmup=spec.training.warmup_steps or spec.training.warmup_ratio,
        data_summary=_data_summary(resolved),
        has_template=has_template,
        # None: one process per visible GPU, counted by launch.sh
        processes_per_machine=(
            spec.distributed.num_processes // spec.distributed.num_machines if spec.distributed.num_processes else None
        ),
        several_processes=several_processes,
        slurm_job_name=re.sub(r"[^A-Za-z0-9_.-]", "_", spec.name)[:64] or "ffc",
        # Datasets with images make train.py the vision path (and only that); decided from dataset_info.json.
        multimodal=bool(media),
        videos="videos" in media,
        media_kinds=media,
    )
    if has_template:
        chat_template = TEMPLATES[data.template]
        if getattr(chat_template, "reasoning_turns", None) not in (None, data.reasoning_turns):
            chat_template = dataclasses.replace(chat_template, reasoning_turns=data.reasoning_turns)
        ctx.update(
            chat_template_name=chat_template.name,
            chat_template_notes=chat_template.notes,
            chat_template_class=type(chat_template).__name__,
            chat_template_fields=chat_template.definition(),
        )
    if ctx["deepspeed"]:
        ctx["deepspeed_config"] = (
            dict(resolved.deepspeed_config) if resolved.deepspeed_config is not None else _deepspeed(spec)
        )
    return ctx


def _data_summary(resolved: Resolved) -> str:
    data, stage = resolved.spec.data, resolved.stage
    if stage.name != "sft":
        return stage.data.summary
    if data.train_on_prompt:
        masking = "Every token is trained."
    elif data.mask_history:
        masking = "Only the last assistant turn of each conversation is trained."
    else:
        masking = "Every assistant turn is trained; prompts are masked."
    return f"{stage.data.summary} {masking}"


def lock(resolved: Resolved, run_dir: Optional[Path] = None) -> dict:
    loaded = resolved.loaded
    # Where `ffc check` and `ffc update` find the spec and the data again, relative to the run directory.
    run_paths = (
        {
            "spec": relative_to_run(loaded, loaded.path.name, run_dir),
            "dataset_dir": relative_to_run(loaded, resolved.spec.data.dataset_dir, run_dir),
        }
        if run_dir is not None
        else {}
    )
    return {
        "ffc_version": __version__,
        "spec_file": loaded.path.name,
        "spec_sha256": loaded.sha256,
        "overrides": loaded.overrides,
        "spec": resolved.lock_spec(),
        "library_defaults": dict(resolved.upstream),
        "library_versions": TESTED_VERSIONS,
        "inputs": {"dataset_dir": resolved.spec.data.dataset_dir, "sha256": dict(resolved.inputs)},
        **({"run_paths": run_paths} if run_paths else {}),
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
    env.filters.update(ident=_ident, module=_module, dtype=_dtype, sh=_sh, slurm=_slurm, run_path=_run_path)
    present = [f for f in RUN_FILES if f.when(ctx)]
    copies = [GeneratedFile(n, None, "a copy of your module of training.callbacks") for n in resolved.callback_sources]
    at = next(i for i, f in enumerate(present) if f.name == "spec.yaml")
    present[at:at] = copies  # listed in the README with the other copies of your files
    ctx["lock"] = lock(resolved, run_dir)
    ctx["run_files"] = present
    texts = {}
    for generated in present:
        template = resolved.stage.recipe if generated.name == "train.py" else generated.template
        if template is not None:
            texts[generated.name] = env.get_template(template).render(**ctx)
    python = rendering.format_python({name: text for name, text in texts.items() if name.endswith(".py")})
    files = {name: python.get(name, text).encode("utf-8") for name, text in texts.items()}
    files["spec.yaml"] = loaded.text.encode("utf-8")
    if resolved.reward_source is not None:
        files["rewards.py"] = resolved.reward_source
    files.update(resolved.callback_sources)
    if vendor:
        files.update(vendored_runtime())
    return resolved, files
