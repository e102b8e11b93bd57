"""Resolve a validated spec: make every default explicit, including the upstream ones that matter.

The result is what the lock file records and what templates render from. It
depends only on the spec (and the data files' bytes for hashes), never on the
machine that builds, so builds are reproducible.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ffc.runtime.data.registry import RegistryError, data_files, read_registry, resolve as resolve_datasets
from ffc.schemas.spec import FREEZE_FIELDS, LORA_FIELDS, STAGE_FIELDS

from .loader import Issue, LoadedSpec, SpecError

# Library versions ffc is tested with; requirements.txt pins these.
TESTED_VERSIONS = {
    "torch": "2.13.0",
    "transformers": "5.23.0",
    "peft": "0.21.2",
    "trl": "1.16.0",
    "accelerate": "1.15.0",
    "datasets": "5.2.0",
    "tokenizers": "0.23.3",
    "matplotlib": "3.11.2",
    "tensorboard": "2.20.0",
    "bitsandbytes": "0.50.2",
    "deepspeed": "0.19.8",
}

# transformers/PEFT behaviour the run relies on, spelled out so a library upgrade cannot change it silently.
UPSTREAM = {
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_epsilon": 1e-8,
    "gradient_checkpointing_kwargs": {"use_reentrant": False},
    "ddp_find_unused_parameters": False,
    "remove_unused_columns": False,
    "label_names": ["labels"],
}


def is_local_path(value: str, base: Path) -> bool:
    """A model reference is a local path when it looks like one or exists next to the spec."""
    return value.startswith(("/", "./", "../", "~")) or (base / value).exists()


@dataclass
class Resolved:
    loaded: LoadedSpec
    spec: dict  # the full spec with every default made explicit
    upstream: dict
    inputs: dict  # relative file path -> sha256 (when the files are present at build time)
    registry: Optional[dict]  # the dataset_info.json entries this run uses, if readable at build time
    registry_note: str = ""
    reward_functions: tuple = ()  # names of the public functions of method.reward_funcs
    reward_source: Optional[bytes] = None  # that file, copied into the run as rewards.py

    @property
    def name(self) -> str:
        return self.spec["name"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _registry(loaded: LoadedSpec, spec: dict) -> tuple[Optional[dict], dict, str]:
    """Entries of dataset_info.json that the run uses, and hashes of their files."""
    dataset_dir = loaded.base_dir / spec["data"]["dataset_dir"]
    names = list(dict.fromkeys(spec["data"]["dataset"] + spec["data"]["eval_dataset"]))
    if not (dataset_dir / "dataset_info.json").exists():
        return None, {}, f"{dataset_dir / 'dataset_info.json'} was not found at build time: train.py reads it at run time."
    try:
        registry = read_registry(dataset_dir)
        attrs = resolve_datasets(dataset_dir, names, registry)
    except RegistryError as exc:
        raise SpecError([Issue(loaded.where(("data", "dataset")), "data.dataset", str(exc))]) from None
    _check_stage_data(loaded, spec["method"]["stage"], attrs)
    inputs = {}
    for attr in attrs:
        for path in data_files(dataset_dir, attr):
            if path.is_file():
                inputs[path.relative_to(dataset_dir).as_posix()] = _sha256(path)
    return {name: registry[name] for name in names}, inputs, ""


def _check_stage_data(loaded: LoadedSpec, stage: str, attrs) -> None:
    """What each stage needs from its datasets, checked from dataset_info.json when it is there."""
    from ffc.runtime.data.convert import data_kind

    kind, problems = data_kind(stage), []
    for attr in attrs:
        if kind == "pairs" and not attr.ranking:
            problems.append(f"dataset {attr.name!r} has no preference pairs: stage {stage} needs ranking: true with chosen and rejected responses")
        elif kind != "pairs" and attr.ranking:
            problems.append(f"dataset {attr.name!r} holds preference pairs (ranking: true): stage {stage} cannot use them")
        elif kind == "kto" and not attr.column("kto_tag"):
            problems.append(f"dataset {attr.name!r} has no desirability label: name it in dataset_info.json as columns.kto_tag")
    if problems:
        raise SpecError([Issue(loaded.where(("data", "dataset")), "data.dataset", p) for p in problems])


def _check_host_memory(loaded: LoadedSpec, spec: dict) -> None:
    """Offloading moves optimizer states (and parameters) to CPU memory: check they fit the machine's,
    when distributed.host_memory_gb is given and the model's config.json is on disk."""
    from . import plan

    dist = spec["distributed"]
    ds, fsdp = dist.get("deepspeed") or {}, dist.get("fsdp") or {}
    offloading = ds.get("offload_optimizer") or ds.get("offload_param") or fsdp.get("offload_params")
    if not (dist["host_memory_gb"] and offloading):
        return
    try:
        shape = plan.Shape.from_config(plan.load_config(spec["model"]["model_name_or_path"], loaded.base_dir))
    except (FileNotFoundError, ValueError):
        return  # checked by `ffc plan --config` instead
    per_device = plan.estimate(shape, plan.setup_from_spec(spec)).cpu_gb
    needed = per_device * dist["num_processes"] / dist["num_machines"]
    if needed > dist["host_memory_gb"]:
        raise SpecError([Issue(
            loaded.where(("distributed", "host_memory_gb")), "distributed.host_memory_gb",
            f"offloading needs about {needed:.0f} GB of CPU memory per machine, more than the {dist['host_memory_gb']:g} GB "
            "given: offload less (offload_param: false), use more machines, or LoRA.",
        )])  # fmt: skip


def resolve(loaded: LoadedSpec) -> Resolved:
    spec = loaded.spec.model_dump(mode="json")
    method, data, training, logging_ = spec["method"], spec["data"], spec["training"], spec["logging"]

    spec["name"] = spec["name"] or loaded.path.stem
    logging_["run_name"] = logging_["run_name"] or spec["name"]
    if method["finetuning_type"] == "lora":
        method["lora_alpha"] = method["lora_alpha"] or 2 * method["lora_rank"]
    drop = {"lora": FREEZE_FIELDS, "freeze": LORA_FIELDS, "full": LORA_FIELDS + FREEZE_FIELDS}
    for name in drop[method["finetuning_type"]]:
        method.pop(name)
    for name, stages in STAGE_FIELDS.items():  # options of other stages stay out of the lock
        if method["stage"] not in stages:
            method.pop(name)
    if data["packing"] is None:
        data["packing"] = method["stage"] == "pt"
    if data["seed"] is None:
        data["seed"] = training["seed"]
    has_eval = data["val_size"] > 0 or bool(data["eval_dataset"])
    if training["eval_strategy"] is None:
        training["eval_strategy"] = "steps" if has_eval else "no"
    if training["eval_steps"] is None and training["eval_strategy"] == "steps":
        training["eval_steps"] = training["save_steps"]
    if "none" in logging_["report_to"] and len(logging_["report_to"]) > 1:
        logging_["report_to"] = [r for r in logging_["report_to"] if r != "none"]
    if spec["serve"]["model_name"] is None:
        spec["serve"]["model_name"] = spec["name"]
    if spec["distributed"]["backend"] != "deepspeed":
        spec["distributed"].pop("deepspeed")
    if spec["distributed"]["backend"] != "fsdp":
        spec["distributed"].pop("fsdp")

    upstream = dict(UPSTREAM)
    upstream["torch_dtype"] = "bfloat16" if training["bf16"] else "float16" if training["fp16"] else "float32"
    if spec["model"]["quantization_bit"]:
        upstream["bnb_compute_dtype"] = upstream["torch_dtype"]

    _check_host_memory(loaded, spec)
    registry, inputs, note = _registry(loaded, spec)
    resolved = Resolved(loaded=loaded, spec=spec, upstream=upstream, inputs=inputs, registry=registry, registry_note=note)
    if method.get("reward_funcs"):
        resolved.reward_source, resolved.reward_functions = _reward_functions(loaded, method["reward_funcs"])
        inputs["reward_funcs:" + method["reward_funcs"]] = hashlib.sha256(resolved.reward_source).hexdigest()
    return resolved


def _reward_functions(loaded: LoadedSpec, value: str) -> tuple[bytes, tuple]:
    """Read the reward-functions file (never import it: building runs no user code) and list its functions."""
    import ast

    path = loaded.base_dir / value
    where = loaded.where(("method", "reward_funcs"))
    try:
        source = path.read_bytes()
        tree = ast.parse(source, filename=str(path))
    except FileNotFoundError:
        raise SpecError([Issue(where, "method.reward_funcs", f"{path} not found")]) from None
    except SyntaxError as exc:
        raise SpecError([Issue(where, "method.reward_funcs", f"{path}:{exc.lineno}: {exc.msg}")]) from None
    names = tuple(n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_"))
    if not names:
        raise SpecError(
            [Issue(where, "method.reward_funcs", f"{path} defines no public function: define fn(prompts, completions, **columns) -> list[float]")]
        )
    return source, names


def relative_to_run(loaded: LoadedSpec, value: str, run_dir: Path) -> str:
    """A path written relative to the spec, re-expressed relative to the run directory."""
    target = (loaded.base_dir / os.path.expanduser(value)).resolve()
    return Path(os.path.relpath(target, run_dir.resolve())).as_posix()
