"""The web form, derived from the spec models: one field per spec option, with its type, range, default
and help text taken from ``ffc.schemas`` so the form never drifts from the CLI.

Pure Python (no UI library): the app turns ``FormField``s into widgets, and the conversions between
widget values and a spec live here, where they are tested.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

import annotated_types
from pydantic import BaseModel
from ruamel.yaml import YAML

from ffc.schemas import Spec

# Sections in the order of the spec; each is an "Advanced" part of the form below the essentials.
SECTIONS = ("model", "method", "data", "training", "logging", "distributed", "inference", "serve", "eval", "export")
# What nearly every run sets, row by row as the essentials screen shows them (human labels:
# locales.HUMAN_LABEL); everything else is in the Advanced sections.
ESSENTIAL_ROWS = (
    ("model.model_name_or_path", "data.template"),
    ("method.stage", "method.finetuning_type", "model.quantization_bit"),
    ("method.lora_rank", "method.lora_alpha", "method.freeze_trainable_layers"),
    ("data.dataset_dir", "data.dataset"),
    ("data.cutoff_len", "training.learning_rate", "training.num_train_epochs", "training.max_steps"),
    ("training.per_device_train_batch_size", "training.gradient_accumulation_steps", "name"),
)
ESSENTIALS = tuple(path for row in ESSENTIAL_ROWS for path in row)
# The options the memory estimate reads (plan.setup_from_spec): a change to one updates it.
PLAN_FIELDS = (
    "model.model_name_or_path", "model.quantization_bit", "method.finetuning_type", "method.lora_rank",
    "method.lora_target", "method.oft_block_size", "method.oft_target", "method.freeze_trainable_layers",
    "data.cutoff_len", "training.per_device_train_batch_size", "training.bf16", "training.fp16",
    "training.gradient_checkpointing", "distributed.backend", "distributed.num_processes", "distributed.num_machines",
    "distributed.deepspeed.zero_stage", "distributed.deepspeed.offload_optimizer", "distributed.deepspeed.offload_param",
    "distributed.fsdp.offload_params",
)  # fmt: skip
ALWAYS_WRITTEN = ("model.model_name_or_path", "data.dataset")  # required: kept in the spec even when empty


@dataclass(frozen=True)
class FormField:
    path: str  # dotted spec key, e.g. "training.learning_rate"
    kind: str  # bool | int | float | choice | text | list | floats | mapping | value
    default: Any
    description: str
    choices: tuple = ()
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    optional: bool = False  # None is allowed (an empty input means "not set")
    required: bool = False

    @property
    def section(self) -> str:
        return self.path.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    @property
    def elem_id(self) -> str:
        return "field-" + self.path.replace(".", "-").replace("_", "-")


def _strip_optional(annotation) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) < len(typing.get_args(annotation)):
            return (args[0] if len(args) == 1 else Union[tuple(args)]), True
    return annotation, False


def _bounds(metadata) -> tuple[Optional[float], Optional[float]]:
    low = high = None
    for item in metadata:
        if isinstance(item, (annotated_types.Ge, annotated_types.Gt)):
            low = getattr(item, "ge", None) if isinstance(item, annotated_types.Ge) else item.gt
        elif isinstance(item, (annotated_types.Le, annotated_types.Lt)):
            high = getattr(item, "le", None) if isinstance(item, annotated_types.Le) else item.lt
    return low, high


def _kind(annotation) -> tuple[str, tuple]:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "choice", typing.get_args(annotation)
    if annotation is bool:
        return "bool", ()
    if annotation is int:
        return "int", ()
    if annotation is float:
        return "float", ()
    if annotation is str:
        return "text", ()
    if origin is list:
        (item,) = typing.get_args(annotation) or (str,)
        return ("floats" if item in (float, int) else "list"), ()
    if origin is dict:
        return "mapping", ()
    return "value", ()  # unions of several types: YAML text, validated by the spec


def fields(model: type[BaseModel] = Spec, prefix: str = "") -> list[FormField]:
    """Every option of the spec as a form field, nested sections flattened to dotted paths."""
    out = []
    for name, info in model.model_fields.items():
        if not prefix and name == "version":
            continue
        annotation, optional = _strip_optional(info.annotation)
        path = f"{prefix}{name}"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += fields(annotation, f"{path}.")
            continue
        kind, choices = _kind(annotation)
        if kind == "bool" and optional:  # "not set" is a third state a checkbox cannot show
            kind, choices = "choice", (True, False)
        low, high = _bounds(info.metadata)
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        out.append(
            FormField(path, kind, default, info.description or "", choices, low, high, optional, info.is_required())
        )
    return out


FIELDS = fields()
BY_PATH = {f.path: f for f in FIELDS}


def is_essential(field: FormField) -> bool:
    return field.path in ESSENTIALS


def item_choices(path: str) -> tuple:
    """The allowed items of a list option whose items are a Literal (e.g. export.gguf's quantizations)."""
    model: Any = Spec
    for key in path.split("."):
        annotation, _ = _strip_optional(model.model_fields[key].annotation)
        model = annotation
    (item,) = typing.get_args(model)
    return typing.get_args(item) if typing.get_origin(item) is Literal else ()


def section_of(field: FormField) -> str:
    return field.section if field.section in SECTIONS else "model"  # top-level "name" goes with the model


# -- widget values <-> spec values ---------------------------------------------------------------------


def _yaml() -> YAML:
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 120
    return yaml


def _parse_yaml(text: str) -> Any:
    yaml = YAML(typ="safe")
    return yaml.load(text)


def to_value(field: FormField, raw: Any) -> Any:
    """A widget's value as the spec value. What cannot be converted is passed on as typed, so the
    spec validation reports it with the same message as the CLI."""
    if isinstance(raw, str):
        raw = raw.strip()
    if raw is None or raw == "" or raw == []:
        if field.kind in ("list", "floats"):
            return None if field.optional else []
        if field.kind == "mapping":
            return {}
        return None if (field.optional or field.required) else field.default
    if field.kind == "bool":
        return bool(raw)
    if field.kind == "int":
        return int(raw) if isinstance(raw, float) and raw.is_integer() else _scalar(raw)
    if field.kind == "float":
        return float(raw) if isinstance(raw, (int, float)) else _scalar(raw)
    if field.kind == "choice":
        return next((c for c in field.choices if str(c).lower() == str(raw).lower()), raw)
    if field.kind in ("list", "floats"):
        items = raw if isinstance(raw, list) else [part.strip() for part in str(raw).split(",") if part.strip()]
        return [_scalar(item) if field.kind == "floats" else item for item in items]
    if field.kind == "mapping":
        if not isinstance(raw, str):
            return raw
        try:
            parsed = _parse_yaml(raw)
        except Exception:  # not YAML: the spec's validation says what a mapping should look like
            return raw
        return parsed if parsed is not None else {}
    if field.kind == "value":
        return _scalar(raw)
    return raw


def _scalar(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        value = _parse_yaml(raw)
    except Exception:
        return raw
    return value if isinstance(value, (int, float, bool, str)) else raw


def to_widget(field: FormField, value: Any) -> Any:
    """A spec value as the widget shows it."""
    if value is None:
        if field.path in ("data.dataset", "data.eval_dataset"):
            return []
        if field.kind in ("int", "float") and not field.optional:
            return None
        return False if field.kind == "bool" else ""
    if field.kind in ("int", "float") and field.optional:
        return str(value)  # shown in a text box, where empty means "not set"
    if field.kind in ("list", "floats"):
        items = [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else list(value)
        if field.path in ("data.dataset", "data.eval_dataset"):
            return items
        return ", ".join(str(v) for v in items)
    if field.kind == "mapping":
        return "\n".join(f"{k}: {v}" for k, v in value.items())
    if field.kind == "choice":
        return str(value) if not isinstance(value, str) else value
    return value


def spec_from_values(values: dict[str, Any]) -> dict:
    """The spec a form describes: only what differs from the defaults (plus required keys), in spec order,
    as a person would write it."""
    spec: dict = {"version": 1}
    for field in FIELDS:
        if field.path not in values:
            continue
        value = to_value(field, values[field.path])
        if field.path not in ALWAYS_WRITTEN and (value == field.default or (value is None and field.default is None)):
            continue
        if value is None and field.path not in ALWAYS_WRITTEN:
            continue
        node = spec
        keys = field.path.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return spec


def values_from_spec(spec: dict) -> dict[str, Any]:
    """Widget values for every field: the spec's value, else the default."""
    values = {}
    for field in FIELDS:
        node: Any = spec
        for key in field.path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
            if node is None:
                break
        values[field.path] = to_widget(field, field.default if node is None else node)
    return values


def to_yaml(spec: dict) -> str:
    import io

    stream = io.StringIO()
    _yaml().dump(_plain_sections(spec), stream)
    return stream.getvalue()


def _plain_sections(spec: dict) -> dict:
    # Sections as block mappings, short lists of names inline ([a, b]) as people write them.
    from ruamel.yaml.comments import CommentedSeq

    def convert(node):
        if isinstance(node, dict):
            return {k: convert(v) for k, v in node.items()}
        if isinstance(node, list) and all(isinstance(v, (str, int, float)) for v in node):
            seq = CommentedSeq(node)
            seq.fa.set_flow_style()
            return seq
        return node

    return convert(spec)


def load_yaml(text: str) -> dict:
    try:
        data = _parse_yaml(text) if text.strip() else {}
    except Exception as exc:  # ruamel's errors carry the line and column
        raise ValueError(f"invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("a spec is a mapping of sections (model:, data:, ...)")
    return data


# -- which fields apply --------------------------------------------------------------------------------


def applies(field: FormField, stage: str, finetuning_type: str) -> bool:
    """Whether a stage- or method-specific option means anything for this stage and tuning method
    (the same tables the spec's rules use), so the form can hide the others."""
    from ffc.schemas.methods import METHOD_OPTIONS, method_owning
    from ffc.schemas.stages import option_applies

    if field.section != "method":
        return True
    if field.name in METHOD_OPTIONS:
        return method_owning(field.name) == finetuning_type
    return option_applies(field.name, stage)
