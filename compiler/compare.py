"""``ffc compare``: the settings that differ between runs (from their locks), their final metrics, and
their loss curves overlaid in one plot. ``compare_runs`` returns plain data, so the web UI's runs
table can show the same comparison; matplotlib is imported only by ``plot``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .diff import flatten
from .render import _md_code

MISSING = None  # a setting a run's lock does not have (another stage, an older ffc)
METRICS = ("steps", "final_loss", "train_loss", "eval_loss", "runtime_s")


@dataclass
class RunData:
    name: str
    path: Path
    settings: dict = field(default_factory=dict)  # flattened lock spec: "training.learning_rate" -> value
    metrics: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)  # key -> [(step, value), ...]
    notes: list = field(default_factory=list)  # what could not be read


@dataclass
class Comparison:
    runs: list  # RunData, in the order given
    differing: list  # setting keys whose values differ between the runs

    def to_dict(self) -> dict:
        return {
            "runs": [r.name for r in self.runs],
            "settings": {key: {r.name: r.settings.get(key, MISSING) for r in self.runs} for key in self.differing},
            "metrics": {r.name: r.metrics for r in self.runs},
            "notes": {r.name: r.notes for r in self.runs if r.notes},
        }


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError):
        return ValueError


def read_run(path: Path, name: Optional[str] = None) -> RunData:
    """A run's settings, final metrics and logged curves; what is missing or damaged goes to ``notes``."""
    run = RunData(name or path.name, path)
    lock = _json(path / "ffc.lock.json")
    output = "output"
    if isinstance(lock, dict) and isinstance(lock.get("spec"), dict):
        run.settings = flatten(lock["spec"])
        output = str(run.settings.get("training.output_dir") or output)
    else:
        run.notes.append("ffc.lock.json " + ("missing" if lock is None else "damaged") + ": settings unknown")
    out = path / output
    for line_no, line in enumerate(_lines(out / "trainer_log.jsonl"), 1):
        try:
            record = json.loads(line)
            step = record["current_steps"]
        except (ValueError, KeyError, TypeError):
            run.notes.append(f"trainer_log.jsonl line {line_no} unreadable (skipped)")
            continue
        for key, value in record.items():
            if key.endswith("loss") and isinstance(value, (int, float)) and math.isfinite(value):
                run.curves.setdefault(key, []).append((step, value))
        run.metrics["steps"] = step
    if not (out / "trainer_log.jsonl").exists():
        run.notes.append("no trainer_log.jsonl: not trained yet")
    if "loss" in run.curves:
        run.metrics["final_loss"] = run.curves["loss"][-1][1]
    if "eval_loss" in run.curves:
        run.metrics["eval_loss"] = run.curves["eval_loss"][-1][1]
    for file, keys in (("train_results.json", ("train_loss", "train_runtime")), ("eval_results.json", ("eval_loss",))):
        results = _json(out / file)
        if results is ValueError:
            run.notes.append(f"{file} damaged")
        elif isinstance(results, dict):
            for key in keys:
                if isinstance(results.get(key), (int, float)):
                    run.metrics["runtime_s" if key == "train_runtime" else key] = results[key]
    return run


def _lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError):
        return []


def _names(paths: list[Path]) -> list[str]:
    """Folder names, or the paths as given where two runs share a folder name."""
    names = [p.name or str(p) for p in paths]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(paths, names)]


def compare_runs(paths: list[Path]) -> Comparison:
    runs = [read_run(Path(p), name) for p, name in zip(paths, _names([Path(p) for p in paths]))]
    known = [r for r in runs if r.settings]
    keys = sorted({k for r in known for k in r.settings})
    differing = [
        k
        for k in keys
        if len({json.dumps(r.settings.get(k, MISSING), sort_keys=True) for r in known}) > 1
        and not _repeats_the_name(k, known)
    ]
    return Comparison(runs, differing)


def _repeats_the_name(key: str, runs: list) -> bool:
    """Settings that only restate each run's own name (name, logging.run_name, serve.model_name as
    derived from it) differ by construction and say nothing the table's header does not."""
    return (
        key != "name"
        and all(r.settings.get(key) == r.settings.get("name") for r in runs)
        or (key == "name" and all(r.settings.get("name") == r.name for r in runs))
    )


def _cell(value) -> str:
    if value is MISSING:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _md_code(value if isinstance(value, str) else json.dumps(value))


def markdown(comparison: Comparison) -> str:
    metrics = [m for m in METRICS if any(m in r.metrics for r in comparison.runs)]
    header = ["run"] + [_md_code(k) for k in comparison.differing] + metrics
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in comparison.runs:
        cells = [_md_code(run.name)]
        cells += [_cell(run.settings.get(k, MISSING)) if run.settings else "?" for k in comparison.differing]
        cells += [_cell(run.metrics.get(m, MISSING)) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    if not comparison.differing:
        lines.append("\nThe runs' settings are the same.")
    for run in comparison.runs:
        lines += [f"\nnote: {run.name}: {note}" for note in run.notes]
    return "\n".join(lines)


def plot(comparison: Comparison, path: Path, key: str = "loss") -> int:
    """Overlay each run's ``key`` curve (and eval_ curve, dashed) in one PNG; returns the curves drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    drawn = 0
    for index, run in enumerate(comparison.runs):
        color = f"C{index % 10}"
        for curve, style in ((key, "-"), (f"eval_{key}", "--")):
            if run.curves.get(curve):
                steps, values = zip(*run.curves[curve])
                ax.plot(steps, values, style, color=color, label=f"{run.name} {curve}" if curve != key else run.name)
                drawn += 1
    ax.set(xlabel="step", ylabel=key, title=f"{key} of {len(comparison.runs)} runs")
    if drawn:
        ax.legend(fontsize="small")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return drawn
