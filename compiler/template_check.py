"""``data.template`` at build time: ``auto`` resolved from the model, and tool data checked against it.

A dataset with a tools column needs a template with a tool format: without one its rows would fail
at run time (or be skipped with ``on_bad_row: skip``), so the build refuses it here, naming the
dataset and the templates that can render it. Pure Python: no torch, no transformers.
"""

from __future__ import annotations

from ffc.runtime.chat.templates import TEMPLATES
from ffc.runtime.chat.templates.detect import suggest_template
from ffc.schemas.spec import Spec

from .loader import Issue, LoadedSpec, SpecError


def choose_template(loaded: LoadedSpec, spec: Spec) -> tuple[Spec, str]:
    """(spec with ``template: auto`` replaced by the family found, the note the build prints)."""
    if spec.data.template != "auto":
        return spec, ""
    model = spec.model.model_name_or_path
    found, why = suggest_template(model, loaded.base_dir)
    if not found:
        raise SpecError(
            [
                Issue(
                    loaded.where(("data", "template")),
                    "data.template",
                    f"template: auto cannot tell the chat template of {model!r} ({why or 'its name names no known family'}): "
                    f"set data.template to one of {', '.join(TEMPLATES)} or tokenizer (ffc templates lists them).",
                )
            ]
        )
    chosen = spec.model_copy(update={"data": spec.data.model_copy(update={"template": found})})
    return chosen, f"data.template auto: {found} (from {why}); check it with: ffc templates --check MODEL_DIR"


def tool_templates() -> list[str]:
    return [name for name, template in TEMPLATES.items() if template.renders_tools]


def check_tool_data(loaded: LoadedSpec, spec: Spec, attrs) -> None:
    """Datasets with a tools column need a template that can render tool definitions."""
    name = spec.data.template
    if not name or name == "tokenizer" or name not in TEMPLATES or TEMPLATES[name].renders_tools:
        return
    problems = [
        f"dataset {attr.name!r} has tool definitions (its {attr.column('tools')!r} column) but template {name!r} "
        f"has no format for them: choose a template that renders tools ({', '.join(tool_templates())}), "
        "or 'tokenizer' if the model's own template does"
        for attr in attrs
        if attr.column("tools")
    ]
    if problems:
        raise SpecError([Issue(loaded.where(("data", "template")), "data.template", p) for p in problems])
