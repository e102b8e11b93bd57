"""``ffc sweep``: one run directory per point of a grid of --set values, and the scripts to train them.

Every point is loaded, validated and rendered before anything is written, so a bad value anywhere
leaves no half-built sweep. The sweep folder gets the run directories (named after their values),
sweep.md and sweep.json (the table of points), run_all.sh (one after another) and, when every point
runs on one machine with the same resources, sweep.sbatch (a SLURM job array, one task per run).
Run names in the scripts are shell-quoted with shlex.quote, so no value can become shell code.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from .render import _md_code


class SweepError(Exception):
    """A grid option or a point of the grid that cannot be built; the message says which."""


@dataclass
class Point:
    name: str
    values: dict  # key -> value as given on the command line
    overrides: list  # the --set options of this run


def _split_values(text: str) -> list[str]:
    """Values separated by commas, except inside [...], {...} or quotes (a YAML list is one value)."""
    values, depth, quote, current = [], 0, None, ""
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(current.strip())
            current = ""
            continue
        current += char
    values.append(current.strip())
    return values


def parse_grid(options: list[str]) -> list[tuple[str, list[str]]]:
    """``key=v1,v2`` options -> [(key, [v1, v2]), ...], in the order given."""
    grid: list[tuple[str, list[str]]] = []
    for option in options:
        key, sep, raw = option.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SweepError(f"--grid {option!r}: write KEY=VALUE1,VALUE2 (e.g. training.learning_rate=1e-4,3e-4)")
        values = _split_values(raw)
        if any(not v for v in values):
            raise SweepError(f"--grid {option!r}: an empty value; separate values by single commas")
        if len(set(values)) != len(values):
            raise SweepError(f"--grid {option!r}: a value is given twice")
        if key in (k for k, _ in grid):
            raise SweepError(f"--grid {key}: given twice; list all its values in one --grid")
        grid.append((key, values))
    if not grid:
        raise SweepError("give at least one --grid KEY=VALUE1,VALUE2")
    return grid


def _word(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_.") or "x"


def points(grid: list[tuple[str, list[str]]]) -> list[Point]:
    """Every combination, named ``<key>-<value>_...`` by the last part of each key (unique names)."""
    leaves = [key.rsplit(".", 1)[-1] for key, _ in grid]
    if len(set(leaves)) != len(leaves):  # two keys with the same last part: name them in full
        leaves = [key for key, _ in grid]
    result, seen = [], set()
    for combination in itertools.product(*(values for _, values in grid)):
        name = "_".join(f"{_word(leaf)}-{_word(value)}" for leaf, value in zip(leaves, combination))[:120]
        unique, n = name, 2
        while unique in seen:  # values that differ only in characters a folder name cannot keep
            unique, n = f"{name}_{n}", n + 1
        seen.add(unique)
        values = {key: value for (key, _), value in zip(grid, combination)}
        result.append(Point(unique, values, [f"{key}={value}" for key, value in values.items()]))
    return result


def _resources(spec) -> tuple:
    """What one array task needs: (machines, GPUs, CPUs, time, partition, account)."""
    dist = spec.distributed
    slurm = dist.slurm
    gpus = (slurm.gpus_per_node if slurm and slurm.gpus_per_node else None) or dist.num_processes // dist.num_machines
    return (
        dist.num_machines,
        gpus,
        slurm.cpus_per_task if slurm else 16,
        slurm.time if slurm else "24:00:00",
        slurm.partition if slurm else None,
        slurm.account if slurm else None,
    )


def _run_all(names: list[str]) -> str:
    runs = " ".join(shlex.quote(name) for name in names)
    return f"""#!/usr/bin/env bash
# Trains the runs of this sweep one after another (written by ffc sweep); arguments go to each
# launch.sh (e.g. --resume). A failed run does not stop the others; the exit status is 1 if any failed.
set -u
cd "$(dirname "$0")"
failed=0
for run in {runs}; do
  echo "== $run"
  if ! (cd "$run" && bash launch.sh "$@"); then
    echo "== $run failed" >&2
    failed=$((failed + 1))
  fi
done
echo "== $failed of {len(names)} runs failed"
exit $((failed > 0 ? 1 : 0))
"""


def _sbatch(names: list[str], resources: tuple, job_name: str) -> str:
    machines, gpus, cpus, time, partition, account = resources
    lines = [
        "#!/usr/bin/env bash",
        "# One SLURM array task per run of this sweep (written by ffc sweep).",
        "# Submit from this folder: sbatch sweep.sbatch",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --array=0-{len(names) - 1}",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={gpus}",
        f"#SBATCH --cpus-per-task={cpus}",
        f"#SBATCH --time={time}",
    ]
    lines += [f"#SBATCH --partition={partition}"] if partition else []
    lines += [f"#SBATCH --account={account}"] if account else []
    runs = "\n".join(f"  {shlex.quote(name)}" for name in names)
    lines += [
        "#SBATCH --output=slurm-%A_%a.out",
        "set -euo pipefail",
        'cd "${SLURM_SUBMIT_DIR:?submit from the sweep folder}"',
        "[ -f sweep.json ] || { echo 'submit from the sweep folder: cd DIR && sbatch sweep.sbatch' >&2; exit 2; }",
        f"RUNS=(\n{runs}\n)",
        'cd "${RUNS[$SLURM_ARRAY_TASK_ID]}"',
        "exec bash launch.sh",
    ]
    return "\n".join(lines) + "\n"


def _table(spec_shown: str, grid, pts: list[Point]) -> str:
    keys = [key for key, _ in grid]
    lines = [f"# Sweep of {_md_code(spec_shown)}", "", f"{len(pts)} runs. Train them with `bash run_all.sh`"]
    lines[-1] += " or `sbatch sweep.sbatch` (a SLURM job array), then `ffc compare */`." + "\n"
    lines += ["| run | " + " | ".join(_md_code(k) for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for point in pts:
        cells = [_md_code(point.name)] + [_md_code(point.values[k]) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sweep(spec: Path, grid_options: list[str], out: Path, base_overrides: list[str] | None = None) -> dict:
    """Build every point of the grid into ``out``; returns what sweep.json holds."""
    from .build import build_files
    from .loader import SpecError, load_spec
    from .writer import write_run, write_text_atomic

    grid = parse_grid(grid_options)
    pts = points(grid)
    built, resources = [], set()
    for point in pts:  # everything is checked before anything is written
        try:
            loaded = load_spec(spec, list(base_overrides or []) + point.overrides)
            resolved, files = build_files(loaded, out / point.name)
        except SpecError as exc:
            raise SweepError(f"run {point.name} ({', '.join(point.overrides)}):\n{exc}") from None
        built.append((point, files))
        resources.add(_resources(resolved.spec))
    for point, files in built:
        write_run(out / point.name, files, base=True)
    spec_shown = Path(os.path.relpath(os.path.abspath(spec), os.path.abspath(out))).as_posix()
    record = {
        "spec": spec_shown,
        "overrides": list(base_overrides or []),
        "grid": {key: values for key, values in grid},
        "runs": [{"name": p.name, "values": p.values, "overrides": p.overrides} for p in pts],
    }
    only = resources.pop() if len(resources) == 1 else None
    record["sbatch"] = "sweep.sbatch" if only is not None and only[0] == 1 else None
    if record["sbatch"] is None:
        record["sbatch_note"] = "the runs need several machines or different resources: submit each run's slurm.sbatch"
    write_text_atomic(out / "sweep.json", json.dumps(record, indent=2) + "\n")
    write_text_atomic(out / "sweep.md", _table(spec_shown, grid, pts))
    write_text_atomic(out / "run_all.sh", _run_all([p.name for p in pts]))
    os.chmod(out / "run_all.sh", 0o755)
    if record["sbatch"]:
        job = re.sub(r"[^A-Za-z0-9_.-]", "_", resolved.spec.name)[:56] or "ffc"
        write_text_atomic(out / "sweep.sbatch", _sbatch([p.name for p in pts], only, f"{job}-sweep"))
    elif (out / "sweep.sbatch").exists():
        os.unlink(out / "sweep.sbatch")  # an earlier grid's: it would launch other runs
    return record
