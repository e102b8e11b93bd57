"""Write a run directory so that nothing the user wrote is deleted or half-overwritten.

- A new directory is built beside its destination and renamed into place.
- An existing directory is updated only if ffc built it (it has a manifest), and
  only files ffc wrote are replaced, each with an atomic rename. Files the user
  added (checkpoints, notes) are never touched.
- A generated file the user edited since the last build is not overwritten
  without ``force``; neither is a directory ffc did not build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

MANIFEST = ".ffc-manifest.json"


class WriteError(Exception):
    pass


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest(files: dict[str, bytes]) -> bytes:
    entries = {name: _sha(data) for name, data in sorted(files.items())}
    return (json.dumps({"generated_by": "ffc", "files": entries}, indent=2) + "\n").encode()


def write_text_atomic(path: Path, text: str) -> None:
    """Replace one file in a single rename, so a reader never sees it half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if "/" not in name:  # scripts that start with #! are executable
            path.chmod(0o755 if data.startswith(b"#!") else 0o644)


def write_run(run_dir: Path, files: dict[str, bytes], force: bool = False) -> list[str]:
    """Write ``files`` into ``run_dir``; returns the names of files whose content changed."""
    run_dir = Path(run_dir)
    files = dict(files)
    files[MANIFEST] = _manifest(files)
    run_dir.parent.mkdir(parents=True, exist_ok=True)

    if not run_dir.exists():
        staging = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", dir=run_dir.parent))
        try:
            _write_tree(staging, files)
            os.chmod(staging, 0o755)
            staging.rename(run_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return sorted(files)

    if not run_dir.is_dir():
        raise WriteError(f"{run_dir} exists and is not a directory")
    manifest_path = run_dir / MANIFEST
    previous: dict[str, str] = {}
    if manifest_path.exists():
        try:
            previous = json.loads(manifest_path.read_text())["files"]
        except (ValueError, KeyError):
            raise WriteError(f"{manifest_path} is damaged; remove it only if ffc built {run_dir}") from None
    elif any(run_dir.iterdir()) and not force:
        raise WriteError(
            f"{run_dir} exists and was not built by ffc: choose another output directory, or pass --force "
            "to write into it (files already there are kept unless ffc generates a file of the same name)"
        )

    edited = [
        name
        for name, digest in previous.items()
        if (run_dir / name).is_file() and _sha((run_dir / name).read_bytes()) != digest
    ]
    clobbered = [name for name in files if name not in previous and (run_dir / name).exists()]
    if (edited or clobbered) and not force:
        details = [f"{name} (edited since the last build)" for name in edited]
        details += [f"{name} (not written by ffc)" for name in clobbered if name != MANIFEST]
        if details:
            raise WriteError(
                f"{run_dir}: would overwrite " + ", ".join(details) + ". Move your changes into the spec, "
                "or pass --force to overwrite."
            )

    # Stage every file first: a failure here leaves the directory untouched.
    staging = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", dir=run_dir.parent))
    changed = []
    try:
        _write_tree(staging, files)
        for name in sorted(files, key=lambda n: n == MANIFEST):  # the manifest last: it vouches for the rest
            target = run_dir / name
            if target.is_file() and target.read_bytes() == files[name]:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, target)
            changed.append(name)
        # Generated files the new build no longer produces go, unless the user changed them.
        for name in previous:
            if name not in files and name not in edited and (run_dir / name).is_file():
                (run_dir / name).unlink()
                changed.append(name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(n for n in changed if n != MANIFEST)
