"""Resolve a validated spec: make every default explicit, including the upstream ones that matter.

The result is what the lock file records and what templates render from. It
depends only on the spec (and the data files' bytes for hashes), never on the
machine that builds, so builds are reproducible.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Optional

from ffc.runtime.data.registry import RegistryError, data_files, read_registry
from ffc.runtime.data.registry import resolve as resolve_datasets
from ffc.runtime.provenance import sha256_file
from ffc.schemas import Spec
from ffc.schemas.methods import (
    BACKEND_SECTIONS,
    BACKENDS,
    METHOD_OPTIONS,
    METHODS,
    Backend,
    FinetuningMethod,
    method_owning,
)
from ffc.schemas.stages import STAGES, Stage, option_applies

from .loader import Issue, LoadedSpec, SpecError
from .media_check import check_media
from .run_files import RUN_FILES
from .template_check import check_tool_data, choose_template

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
    "tensorboard": "2.21.0",
    "bitsandbytes": "0.50.2",
    "deepspeed": "0.19.8",
    # optimizers (training.use_*) and export.onnx
    "galore-torch": "1.0",
    "apollo-torch": "1.0.3",
    "badam": "1.4",
    "adam-mini": "1.1.1",
    "onnx": "1.23.2",
    "onnxruntime": "1.32.0",
    "torchao": "0.18.0",  # model.quantization_method: torchao
    "av": "18.1.0",  # datasets with videos
    "liger-kernel": "0.8.5",  # the current release; its kernels need a GPU, which CI lacks (scripts/gpu_check.sh)
    # export.export_quantization_bit: the current releases; GPTQ quantizes on a GPU, which CI lacks
    "optimum": "2.3.0",
    "gptqmodel": "7.7.0",
}

# transformers/PEFT behaviour the run relies on, spelled out so a library upgrade cannot change it silently.
UPSTREAM = {
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_epsilon": 1e-8,
    "activation_checkpointing_kwargs": {"use_reentrant": False},
    "ddp_find_unused_parameters": False,
    "remove_unused_columns": False,
    "label_names": ["labels"],
}


def is_local_path(value: str, base: Path) -> bool:
    """A model reference is a local path when it looks like one or exists next to the spec."""
    if value.startswith(("/", "./", "../", "~")):
        return True
    try:
        return (base / value).exists()
    except (OSError, ValueError):  # too long a name, a NUL byte: no such file, so a hub id
        return False


@dataclass(frozen=True)
class Resolved:
    """A validated spec with every default made explicit, and what the build learnt about its inputs.

    Templates, the lock file, ``ffc plan`` and the UI read this; nothing changes it after ``resolve``."""

    loaded: LoadedSpec
    spec: Spec  # frozen; derived defaults filled in
    upstream: Mapping  # library behaviour the run pins
    inputs: Mapping  # relative file path -> sha256 (when the files are present at build time)
    registry: Optional[Mapping]  # the dataset_info.json entries this run uses, if readable at build time
    registry_note: str = ""
    reward_functions: tuple = ()  # names of the public functions of method.reward_funcs
    reward_source: Optional[bytes] = None  # that file, copied into the run as rewards.py
    callback_sources: Mapping = field(
        default_factory=lambda: MappingProxyType({})
    )  # "my_callbacks.py" -> its source, for training.callbacks
    template_note: str = ""  # how template: auto chose, printed by the build
    deepspeed_config: Optional[Mapping] = None  # distributed.deepspeed.config_file, read (the run's ds_config.json)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def stage(self) -> Stage:
        return STAGES[self.spec.method.stage]

    @property
    def finetuning(self) -> FinetuningMethod:
        return METHODS[self.spec.method.finetuning_type]

    @property
    def backend(self) -> Backend:
        return BACKENDS[self.spec.distributed.backend]

    def lock_spec(self) -> dict:
        """The resolved spec as the lock records it: every option that applies to this run, no others."""
        return self.spec.model_dump(mode="json", exclude=inapplicable(self.spec))


def inapplicable(spec: Spec) -> dict:
    """Options the spec carries that mean nothing for its stage, method and backend (pydantic exclude form)."""
    stage, method, backend = spec.method.stage, spec.method.finetuning_type, spec.distributed.backend
    method_fields = {
        name for name in type(spec.method).model_fields
        if not option_applies(name, stage) or (name in METHOD_OPTIONS and method_owning(name) != method)
    }  # fmt: skip
    data_fields = {name for name in type(spec.data).model_fields if not option_applies(name, stage, "data")}
    other_backends = {name for name in BACKEND_SECTIONS if name != BACKENDS[backend].section}
    exclude: dict = {"method": method_fields, "distributed": other_backends}
    if data_fields:
        exclude["data"] = data_fields
    if not STAGES[stage].trains:  # an inference-only run: nothing of training applies
        exclude["method"] = set(type(spec.method).model_fields) - {"stage"}
        for section in ("training", "logging", "distributed"):
            exclude[section] = set(type(getattr(spec, section)).model_fields)
    return exclude


def _registry(loaded: LoadedSpec, spec: Spec) -> tuple[Optional[dict], dict, str]:
    """Entries of dataset_info.json that the run uses, and hashes of their files."""
    dataset_dir = loaded.base_dir / spec.data.dataset_dir
    names = list(dict.fromkeys(spec.data.dataset + spec.data.eval_dataset))
    if not names:  # an inference-only run without evaluation data reads no dataset_info.json
        return None, {}, ""
    try:
        # lexists: a dangling link or a link loop is there, and read_registry says what is wrong with it.
        present = os.path.lexists(dataset_dir / "dataset_info.json")
    except (OSError, ValueError):
        present = False
    if not present:
        return (
            None,
            {},
            f"{dataset_dir / 'dataset_info.json'} was not found at build time: train.py reads it at run time.",
        )
    where = loaded.where(("data", "dataset"))
    try:
        registry = read_registry(dataset_dir)
        attrs = resolve_datasets(dataset_dir, names, registry)
        _check_stage_data(loaded, STAGES[spec.method.stage], attrs)
        check_tool_data(loaded, spec, attrs)
        check_media(loaded, spec, registry, names)
        inputs = {}
        for attr in attrs:
            for path in data_files(dataset_dir, attr):
                if path.is_file():
                    inputs[path.relative_to(dataset_dir).as_posix()] = sha256_file(
                        path
                    )  # as train.py's provenance hashes them
    except RegistryError as exc:
        raise SpecError([Issue(where, "data.dataset", str(exc))]) from None
    except OSError as exc:
        raise SpecError([Issue(where, "data.dataset", f"cannot read {exc.filename}: {exc.strerror or exc}")]) from None
    return {name: registry[name] for name in names}, inputs, ""


def _check_stage_data(loaded: LoadedSpec, stage: Stage, attrs) -> None:
    """What the stage needs from its datasets, checked from dataset_info.json when it is there."""
    problems = [p for attr in attrs for p in stage.data.problems(stage.name, attr.name, attr.ranking, attr.columns)]
    if problems:
        raise SpecError([Issue(loaded.where(("data", "dataset")), "data.dataset", p) for p in problems])


def _check_host_memory(loaded: LoadedSpec, spec: Spec) -> None:
    """Offloading moves optimizer states (and parameters) to CPU memory: check they fit the machine's,
    when distributed.host_memory_gb is given and the model's config.json is on disk."""
    from . import plan

    dist = spec.distributed
    offloading = {
        "deepspeed": dist.deepspeed.offload_optimizer or dist.deepspeed.offload_param,
        "fsdp": dist.fsdp.offload_params,
    }.get(dist.backend, False)
    if not (dist.host_memory_gb and offloading and dist.num_processes):
        return  # with num_processes unset the processes per machine are known at launch only
    try:
        shape = plan.Shape.from_config(plan.load_config(spec.model.model_name_or_path, loaded.base_dir))
    except (FileNotFoundError, ValueError):
        return  # checked by `ffc plan --config` instead
    per_device = plan.estimate(shape, plan.setup_from_spec(spec)).cpu_gb
    needed = per_device * dist.num_processes / dist.num_machines
    if needed > dist.host_memory_gb:
        raise SpecError([Issue(
            loaded.where(("distributed", "host_memory_gb")), "distributed.host_memory_gb",
            f"offloading needs about {needed:.0f} GB of CPU memory per machine, more than the {dist.host_memory_gb:g} GB "
            "given: offload less (offload_param: false), use more machines, or LoRA.",
        )])  # fmt: skip


def _fill(section, **values):
    """A copy of a frozen section with the derived values that are still unset filled in."""
    return section.model_copy(update={k: v for k, v in values.items() if getattr(section, k) is None})


def _with_defaults(loaded: LoadedSpec) -> Spec:
    """Every derived default, computed here and nowhere else (the schema marks them with ``derived``)."""
    spec = loaded.spec
    name = spec.name or loaded.path.stem
    stage = STAGES[spec.method.stage]
    method = spec.method
    if method.finetuning_type == "lora":
        method = _fill(method, lora_alpha=2 * method.lora_rank)
    has_eval = spec.data.val_size > 0 or bool(spec.data.eval_dataset)
    training = _fill(spec.training, eval_strategy="steps" if has_eval else "no")
    # Where ffc computes the log-probabilities (Stage.lean_logits "ffc"), chunked unless Liger or Unsloth brings
    # its own fused loss or the output head is sharded; TRL's DPO/KTO/GRPO always use their own fused head
    # ("trl": true, for the lock).
    lean_loss = stage.lean_logits == "ffc" and not spec.model.enable_liger_kernel and not spec.model.use_unsloth
    sharded_head = spec.distributed.backend == "fsdp" or (
        # a DeepSpeed file of the user's own may hold ZeRO-3: its stage is read later, so assume it
        spec.distributed.backend == "deepspeed"
        and (spec.distributed.deepspeed.zero_stage == 3 or spec.distributed.deepspeed.config_file is not None)
    )
    training = _fill(training, chunked_loss=stage.lean_logits == "trl" or (lean_loss and not sharded_head))
    if training.eval_strategy == "steps" and training.eval_steps is None:
        training = training.model_copy(update={"eval_steps": training.save_steps})
    report_to = spec.logging.report_to
    if "none" in report_to and len(report_to) > 1:
        report_to = [r for r in report_to if r != "none"]
    logging_ = _fill(spec.logging.model_copy(update={"report_to": report_to}), run_name=name)
    dist = spec.distributed
    if dist.num_processes is None and dist.backend == "none":
        dist = dist.model_copy(update={"num_processes": 1})
    elif dist.num_processes is None and dist.slurm is not None and dist.slurm.gpus_per_node:
        dist = dist.model_copy(update={"num_processes": dist.slurm.gpus_per_node * dist.num_machines})
    # Still unset: one process per GPU each machine has, counted by launch.sh (as LLaMA-Factory does).
    if dist.slurm is not None:
        dist = dist.model_copy(
            update={"slurm": _fill(dist.slurm, gpus_per_node=dist.num_processes // dist.num_machines)}
        )
    return spec.model_copy(
        update={
            "name": name,
            "method": method,
            "data": _fill(
                spec.data,
                packing=stage.packing_default,
                padding_free="padding_free" in stage.data_options,
                seed=spec.training.seed,
            ),
            "training": training,
            "logging": logging_,
            "distributed": dist,
            "serve": _fill(spec.serve, model_name=name),
        }
    )


def resolve(loaded: LoadedSpec) -> Resolved:
    spec, template_note = choose_template(loaded, _with_defaults(loaded))
    upstream = dict(UPSTREAM)
    upstream["torch_dtype"] = "bfloat16" if spec.training.bf16 else "float16" if spec.training.fp16 else "float32"
    if spec.training.use_reentrant_gc:  # LLaMA-Factory's use_reentrant_gc: torch's older checkpointing
        upstream["activation_checkpointing_kwargs"] = {"use_reentrant": True}
    if spec.model.quantization_bit:
        upstream["bnb_compute_dtype"] = upstream["torch_dtype"]

    deepspeed_config = None
    if spec.distributed.deepspeed.config_file:
        spec, deepspeed_config = _user_deepspeed(loaded, spec)
        inputs_ds = hashlib.sha256(json.dumps(deepspeed_config, sort_keys=True).encode()).hexdigest()
    _check_host_memory(loaded, spec)
    registry, inputs, note = _registry(loaded, spec)
    reward_source, reward_functions = None, ()
    if spec.method.reward_funcs:
        reward_source, reward_functions = _reward_functions(loaded, spec.method.reward_funcs)
        inputs["reward_funcs:" + spec.method.reward_funcs] = hashlib.sha256(reward_source).hexdigest()
    if deepspeed_config is not None:
        inputs["deepspeed:" + spec.distributed.deepspeed.config_file] = inputs_ds
    callback_sources = _callback_files(loaded, spec)
    for name, source in callback_sources.items():
        inputs["callbacks:" + name] = hashlib.sha256(source).hexdigest()
    return Resolved(
        loaded=loaded,
        spec=spec,
        upstream=MappingProxyType(upstream),
        inputs=MappingProxyType(inputs),
        registry=MappingProxyType(registry) if registry is not None else None,
        registry_note=note,
        reward_functions=reward_functions,
        reward_source=reward_source,
        callback_sources=MappingProxyType(callback_sources),
        template_note=template_note,
        deepspeed_config=MappingProxyType(deepspeed_config) if deepspeed_config is not None else None,
    )


def _user_deepspeed(loaded: LoadedSpec, spec: Spec) -> tuple[Spec, dict]:
    """Read distributed.deepspeed.config_file; its ZeRO stage and offloading become the section's, so that
    the rules, ``ffc plan`` and accelerate_config.yaml describe the run the file configures."""
    import stat

    ds = spec.distributed.deepspeed
    where = loaded.where(("distributed", "deepspeed", "config_file"))
    path = loaded.base_dir / ds.config_file

    def fail(message: str):
        return SpecError([Issue(where, "distributed.deepspeed.config_file", message)])

    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise fail(f"{path} is not a regular file: name a DeepSpeed JSON file")
        if path.stat().st_size > 1_000_000:
            raise fail(f"{path} is larger than 1 MB: a DeepSpeed config is a small JSON file")
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise fail(f"{path} not found") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise fail(f"cannot read {path} as JSON: {getattr(exc, 'strerror', None) or exc}") from None
    zero = config.get("zero_optimization", {}) if isinstance(config, dict) else None
    if not isinstance(zero, dict) or zero.get("stage", 0) not in (0, 1, 2, 3):
        raise fail(f"{path} is not a DeepSpeed config: a JSON object whose zero_optimization.stage is 0 to 3")

    def offloaded(name: str) -> bool:
        part = zero.get(name)
        return isinstance(part, dict) and part.get("device", "none") not in ("none", None)

    found = {
        "zero_stage": zero.get("stage", 0),
        "offload_optimizer": offloaded("offload_optimizer"),
        "offload_param": offloaded("offload_param"),
    }
    clash = [k for k in ds.model_fields_set & set(found) if getattr(ds, k) != found[k]]
    if clash:
        raise fail(
            f"{path} sets {', '.join(f'{k}={found[k]!r}' for k in sorted(clash))} (read from the file): "
            "remove those options from distributed.deepspeed or change the file"
        )
    dist = spec.distributed.model_copy(update={"deepspeed": ds.model_copy(update=found)})
    return spec.model_copy(update={"distributed": dist}), config


def _python_file(loaded: LoadedSpec, value: str, where, key: str, what: str):
    """(source, syntax tree) of a user's Python file beside the spec, read and parsed but never imported
    (building runs no user code); every problem is a SpecError at ``where``."""
    import ast
    import stat

    path = loaded.base_dir / value
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):  # a FIFO would block the build; a directory cannot be read
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise SpecError([Issue(where, key, f"{path} is {kind}: name a Python file of {what}")])
        source = path.read_bytes()
        return source, ast.parse(source, filename=str(path))
    except FileNotFoundError:
        raise SpecError([Issue(where, key, f"{path} not found")]) from None
    except (OSError, ValueError) as exc:  # a name too long, a link loop, a NUL byte
        reason = getattr(exc, "strerror", None) or str(exc)
        raise SpecError([Issue(where, key, f"cannot read {value!r}: {reason}")]) from None
    except SyntaxError as exc:
        raise SpecError([Issue(where, key, f"{path}:{exc.lineno}: {exc.msg}")]) from None


def _callback_files(loaded: LoadedSpec, spec: Spec) -> dict:
    """training.callbacks whose module is a .py file beside the spec: copied into the run, as rewards are
    (an installed module is imported from the environment instead). The file must define the class."""
    import ast

    taken = {f.name for f in RUN_FILES}  # the names a copy must not take
    files: dict = {}
    for index, item in enumerate(spec.training.callbacks):
        module, _, cls = item.partition(":")
        name = module + ".py"
        if "." in module or not (loaded.base_dir / name).exists():
            continue
        where = loaded.where(("training", "callbacks", index))
        if name in taken:
            raise SpecError([Issue(where, "training.callbacks", f"{name} is a file ffc generates: rename your module")])
        if name not in files:
            files[name] = _python_file(loaded, name, where, "training.callbacks", "callbacks")
        source, tree = files[name]
        if not any(isinstance(n, ast.ClassDef) and n.name == cls for n in tree.body):
            raise SpecError([Issue(where, "training.callbacks", f"{loaded.base_dir / name} defines no class {cls}")])
    return {name: source for name, (source, _) in sorted(files.items())}


def _reward_functions(loaded: LoadedSpec, value: str) -> tuple[bytes, tuple]:
    """Read the reward-functions file and list its public functions."""
    import ast

    where = loaded.where(("method", "reward_funcs"))
    source, tree = _python_file(loaded, value, where, "method.reward_funcs", "reward functions")
    path = loaded.base_dir / value
    names = tuple(n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_"))
    if not names:
        raise SpecError(
            [
                Issue(
                    where,
                    "method.reward_funcs",
                    f"{path} defines no public function: define fn(prompts, completions, **columns) -> list[float]",
                )
            ]
        )
    return source, names


def relative_to_run(loaded: LoadedSpec, value: str, run_dir: Path) -> str:
    """A path as the run directory writes it. Relative paths are relative to the spec, so they are
    re-expressed relative to the run directory (a committed spec, data and run keep working after a
    clone elsewhere); absolute and ``~`` paths stay exactly as written."""
    if os.path.isabs(value) or value.startswith("~"):
        return value
    target = os.path.normpath(os.path.join(os.path.abspath(loaded.base_dir), value))
    return Path(os.path.relpath(target, os.path.abspath(run_dir))).as_posix()
