"""``ffc update``: rebuild a run after a spec change or an ffc upgrade, keeping the user's edits.

Each generated file is merged three ways, as ``copier update`` does for project templates: the file
as ffc last generated it (the pristine copy in ``.ffc/base/``, trusted only if it matches the
manifest), the user's current file, and the newly generated one. Files the user did not edit are
simply replaced. Conflicts are written with the standard markers and listed. Nothing the user wrote
is lost: a file that cannot be merged keeps the user's version (the new one is in ``.ffc/base/``),
and an edited lock is saved beside the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .writer import BASE_DIR, JOURNAL, MANIFEST, _read_hashes, write_run

LOCK = "ffc.lock.json"


class UpdateError(Exception):
    """The run cannot be updated as it is; the message says what to do."""


@dataclass
class UpdateResult:
    spec: Path
    changed: list = field(default_factory=list)  # files whose content changed on disk
    merged: list = field(default_factory=list)  # edited files merged cleanly with the new build
    conflicts: list = field(default_factory=list)  # (name, why) pairs: markers written, or yours kept
    kept: list = field(default_factory=list)  # edited files the new build no longer generates: left in place
    saved: list = field(default_factory=list)  # copies of user files ffc had to replace


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def merge3(base: bytes, yours: bytes, new: bytes, name: str) -> tuple[Optional[bytes], int]:
    """(merged bytes, number of conflicts); (None, 0) when the texts cannot be merged (binary).

    git merge-file is the standard three-way text merge with the standard conflict markers; no
    maintained pure-Python merge ships with ffc's dependencies, so update needs git installed."""
    git = shutil.which("git")
    if git is None:
        raise UpdateError("ffc update merges with `git merge-file`: install git and run it again")
    with tempfile.TemporaryDirectory(prefix="ffc-merge-") as tmp:
        paths = []
        for label, data in (("yours", yours), ("base", base), ("new", new)):
            path = Path(tmp) / label
            path.write_bytes(data)
            paths.append(str(path))
        labels = [f"yours: {name}", f"ffc's last build: {name}", f"ffc's new build: {name}"]
        done = subprocess.run(
            [git, "merge-file", "-p", "-L", labels[0], "-L", labels[1], "-L", labels[2], *paths],
            capture_output=True,
        )
    if done.returncode < 0 or done.returncode >= 128:  # an error (binary input), not a conflict count
        return None, 0
    return done.stdout, done.returncode


def _spec_path(run_dir: Path, lock: Optional[dict], spec: Optional[Path]) -> Path:
    if spec is not None:
        return spec
    run_paths = (lock or {}).get("run_paths")
    relative = run_paths.get("spec") if isinstance(run_paths, dict) else None
    if not isinstance(relative, str) or not relative:
        raise UpdateError(f"{run_dir / LOCK} does not say where the spec is: pass --spec SPEC")
    path = Path(os.path.normpath(run_dir / relative))
    if not path.is_file():
        raise UpdateError(f"the spec {path} (recorded in {run_dir / LOCK}) is not there: pass --spec SPEC")
    return path


def _read_lock(run_dir: Path, spec: Optional[Path]) -> Optional[dict]:
    try:
        lock = json.loads((run_dir / LOCK).read_text(encoding="utf-8"))
        if not isinstance(lock, dict) or not isinstance(lock.get("overrides", []), list):
            raise ValueError("not a lock")
        return lock
    except (OSError, UnicodeDecodeError, ValueError):
        if spec is None:
            raise UpdateError(
                f"{run_dir / LOCK} is missing or damaged, so the spec and its --set overrides are unknown: "
                "pass --spec SPEC (and --set for any overrides)"
            ) from None
        return None


def update_run(run_dir: Path, spec: Optional[Path] = None, overrides: Optional[list] = None) -> UpdateResult:
    """Rebuild ``run_dir`` from its spec (or ``spec``) and merge the user's edits into the new files.
    ``overrides`` replace the lock's --set overrides when given."""
    from .build import build_files
    from .loader import load_spec

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UpdateError(f"{run_dir} is not a directory: give the run directory ffc built")
    own = _read_hashes(run_dir / MANIFEST, run_dir, force=False)  # WriteError when damaged
    pending = _read_hashes(run_dir / JOURNAL, run_dir, force=False)
    if own is None and pending is None:
        raise UpdateError(f"{run_dir} has no {MANIFEST}: ffc did not build it, so there is nothing to update")
    for name, digests in (pending or {}).items():  # a killed build's files are ffc's own too
        own = own or {}
        own.setdefault(name, set()).update(digests)
    lock = _read_lock(run_dir, spec)
    spec_path = _spec_path(run_dir, lock, spec)
    if overrides is None:
        overrides = list((lock or {}).get("overrides", []))
    vendor = any(name.startswith("ffc/runtime/") for name in own)
    loaded = load_spec(spec_path, overrides)
    _, files = build_files(loaded, run_dir, vendor=vendor)

    _refuse_unresolved(run_dir, files)
    result = UpdateResult(spec=spec_path)
    edits: dict[str, bytes] = {}
    for name, new in files.items():
        path = run_dir / name
        if not os.path.lexists(path):
            continue  # deleted (or new): the new build's file is written
        if path.is_symlink() or not path.is_file():
            raise UpdateError(f"{path} is not a file: move it away and run ffc update again")
        yours = path.read_bytes()
        if yours == new or _sha(yours) in own.get(name, ()):
            continue  # not edited: replaced by the new build's file
        if name == LOCK:  # ffc's record, never merged: the user's copy is kept beside it
            saved = f"{LOCK}.yours"
            tmp = run_dir / f".{saved}.tmp"
            tmp.write_bytes(yours)
            os.replace(tmp, run_dir / saved)  # a reader never sees half a copy
            result.saved.append(saved)
            edits[name] = new  # replaced by the new lock although edited: the copy above keeps the user's
            continue
        base = _base(run_dir, name, own)
        if base is None:
            edits[name] = yours
            result.conflicts.append(
                (name, f"no pristine copy of the last build: yours kept, the new one is in {BASE_DIR}/{name}")
            )
            continue
        merged, conflicts = merge3(base, yours, new, name)
        if merged is None:
            edits[name] = yours
            result.conflicts.append(
                (name, f"cannot be merged as text: yours kept, the new one is in {BASE_DIR}/{name}")
            )
        elif conflicts:
            edits[name] = merged
            result.conflicts.append(
                (name, f"{conflicts} conflict{'s' if conflicts > 1 else ''} marked <<<<<<< ======= >>>>>>>")
            )
        else:
            edits[name] = merged
            result.merged.append(name)
    for name, digests in own.items():
        if name not in files and name != MANIFEST and not name.startswith(BASE_DIR + "/"):
            path = run_dir / name
            if os.path.lexists(path) and (not path.is_file() or _sha(path.read_bytes()) not in digests):
                result.kept.append(name)
    changed = write_run(run_dir, files, base=True, edits=edits)
    result.changed = [n for n in changed if not n.startswith(".ffc")]
    return result


def _unresolved(data: bytes) -> bool:
    """Whether ``data`` still holds a conflict block an earlier update wrote (our labels, both ends)."""
    lines = data.splitlines()
    return any(line.startswith(b"<<<<<<< yours: ") for line in lines) and any(
        line.startswith(b">>>>>>> ffc's new build: ") for line in lines
    )


def _refuse_unresolved(run_dir: Path, files: dict) -> None:
    """Merging a file that still has conflict markers would nest new markers inside the old ones (an
    update with conflicts that was stopped and run again): refuse before anything is written."""
    marked = []
    for name in files:
        path = run_dir / name
        if path.is_file() and not path.is_symlink() and _unresolved(path.read_bytes()):
            marked.append(name)
    if marked:
        raise UpdateError(
            f"{', '.join(marked)} in {run_dir} still {'has' if len(marked) == 1 else 'have'} the conflict "
            "markers of an earlier `ffc update`: resolve them (search for <<<<<<<, keep the lines you want, "
            "remove the markers), then run ffc update again; nothing was changed"
        )


def _base(run_dir: Path, name: str, own: dict) -> Optional[bytes]:
    """The pristine copy of ``name`` from the last build, if it is there and matches the manifest."""
    path = run_dir / BASE_DIR / name
    try:
        if path.is_symlink() or not path.is_file():
            return None
        data = path.read_bytes()
    except OSError:
        return None
    return data if _sha(data) in own.get(name, ()) else None


def report(run_dir: Path, result: UpdateResult) -> str:
    lines = [f"updated {run_dir} from {result.spec}: {len(result.changed) or 'no'} file(s) changed"]
    lines += [f"  merged    {name} (your edits kept)" for name in result.merged]
    lines += [f"  CONFLICT  {name}: {why}" for name, why in result.conflicts]
    lines += [f"  kept      {name} (edited; the new build no longer generates it)" for name in result.kept]
    lines += [f"  saved     {name} (your edited copy)" for name in result.saved]
    if result.conflicts:
        lines.append("resolve the conflicts (search for <<<<<<<), then `ffc check` lists what differs from the build")
    return "\n".join(lines)
