"""``ffc diff``: what changes between two specs or run directories."""

from __future__ import annotations

import difflib
import json
import tempfile
from pathlib import Path

from .writer import MANIFEST


def flatten(node, prefix: str = "") -> dict:
    """A nested mapping as {"section.key": value} (how diff and compare name settings)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): node}


def _files(target: Path, overrides: list[str], scratch: Path) -> dict[str, bytes]:
    if target.is_dir():
        return {
            p.relative_to(target).as_posix(): p.read_bytes()
            for p in sorted(target.rglob("*"))
            if p.is_file() and not p.name.startswith(".ffc-") and not _is_output(p.relative_to(target))
        }
    from .build import build_files
    from .loader import load_spec

    # Both builds use run directories at the same depth, so relative paths compare equal.
    _, files = build_files(load_spec(target, overrides), scratch / "run")
    return files


def _is_output(rel: Path) -> bool:
    return rel.parts[0] in ("output", "runs", ".ffc") or "__pycache__" in rel.parts  # .ffc: base copies


def diff_runs(a: Path, b: Path, overrides: list[str]) -> str:
    with tempfile.TemporaryDirectory() as da, tempfile.TemporaryDirectory() as db:
        left, right = _files(a, overrides, Path(da)), _files(b, overrides, Path(db))
    return diff_files(left, right)


def run_files(run_dir: Path) -> dict[str, bytes]:
    """The files ffc generated in a run directory (its manifest's list), as they are on disk now."""
    try:
        names = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError):
        return {}
    return {
        name: (run_dir / name).read_bytes()
        for name in names
        if (run_dir / name).is_file() and not name.startswith(".ffc/")  # .ffc/base/: update's copies
    }


def diff_files(left: dict[str, bytes], right: dict[str, bytes]) -> str:
    """Changed settings (from the lock files), then a unified diff of every other changed file."""
    lines = []
    lock_a = json.loads(left.get("ffc.lock.json", b"{}")).get("spec", {})
    lock_b = json.loads(right.get("ffc.lock.json", b"{}")).get("spec", {})
    fa, fb = flatten(lock_a), flatten(lock_b)
    changes = [key for key in sorted(set(fa) | set(fb)) if fa.get(key, "<unset>") != fb.get(key, "<unset>")]
    if changes:
        lines.append("settings:")
        lines += [f"  {key}: {json.dumps(fa.get(key))} -> {json.dumps(fb.get(key))}" for key in changes]
    for name in sorted(set(left) | set(right)):
        if name in ("ffc.lock.json", "spec.yaml"):
            continue  # summarised above
        old, new = left.get(name, b""), right.get(name, b"")
        if old == new:
            continue
        lines += difflib.unified_diff(
            old.decode("utf-8", "replace").splitlines(),
            new.decode("utf-8", "replace").splitlines(),
            f"a/{name}",
            f"b/{name}",
            lineterm="",
        )
    return "\n".join(lines)
