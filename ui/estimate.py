"""The essentials screen's live memory estimate: ``ffc plan`` (``compiler/plan.py``) on the form's settings.

The model's shape comes from the model catalogue for a hub id it lists, else from the config.json of a
model folder in the workspace (the UI reads nothing outside it). The settings are checked by the spec's
own models (pydantic, no file access), so an estimate appears as soon as they make sense, before the
datasets are chosen.
"""

from __future__ import annotations

import json
from typing import Optional

from pydantic import ValidationError

from ffc.compiler import catalogue
from ffc.compiler import plan as planner
from ffc.schemas import Spec

from . import form, locales
from .jobs import OutsideWorkspace, Workspace

ALTERNATIVES_SHOWN = 4


def model_config(model: str, workspace: Workspace) -> Optional[dict]:
    """The config.json numbers of ``model``: the catalogue's, else a workspace folder's; None if neither."""
    entry = catalogue.find(model)
    if entry is not None:
        return entry.config
    try:
        path = workspace.inside(model) / "config.json"
    except OutsideWorkspace:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _setup(by_path: dict) -> planner.Setup:
    """The planner's view of the form; ValueError with the first problem when the settings are invalid."""
    spec = form.spec_from_values(by_path)
    spec["data"]["dataset"] = spec["data"].get("dataset") or ["(not chosen yet)"]  # not read by the estimate
    spec.pop("name", None)
    try:
        return planner.setup_from_spec(Spec.model_validate(spec))
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ValueError(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}") from None


def memory_estimate(workspace: Workspace, by_path: dict, gpu_gb: Optional[float], lang: str) -> str:
    """Markdown: the per-device memory by component, and whether (and what) fits ``gpu_gb``."""
    say = lambda key, **values: locales.text(key, lang, **values)  # noqa: E731
    model = str(by_path.get("model.model_name_or_path") or "").strip()
    title = f"**{say('plan_title')}**\n\n"
    if not model:
        return title + say("plan_needs_model")
    config = model_config(model, workspace)
    if config is None:
        return title + say("plan_no_config", model=f"`{model}`")
    try:
        shape = planner.Shape.from_config(config)
        setup = _setup(by_path)
    except ValueError as exc:
        return title + say("plan_invalid", problem=str(exc))
    result = planner.estimate(shape, setup)
    lines = [
        say("plan_params", params=catalogue.params_text(shape.params), setup=setup.label()),
        "",
        planner.table(result),
    ]
    if gpu_gb:
        fits = result.total <= gpu_gb
        lines += ["", say("plan_fits" if fits else "plan_too_big", total=result.total, gpu=gpu_gb)]
        if not fits:
            options = planner.alternatives(shape, setup, gpu_gb, limit=ALTERNATIVES_SHOWN)
            if options:
                lines += ["", say("plan_options"), ""] + [f"- {o.total:.1f} GB: {o.setup.label()}" for o in options]
            else:
                lines += ["", say("plan_nothing_fits")]
    return title + "\n".join(lines)
