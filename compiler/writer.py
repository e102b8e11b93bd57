"""Write a run directory so that nothing the user wrote is deleted or half-overwritten.

- A new directory is built beside its destination and renamed into place.
- An existing directory is updated only if ffc built it (it has a manifest), and
  only files ffc wrote are replaced, each with an atomic rename. Files the user
  added (checkpoints, notes) are never touched.
- A generated file the user edited since the last build is not overwritten
  without ``force``; neither is a directory ffc did not build.
- A build killed at any point leaves a directory the next build completes without
  ``force``: before it replaces anything, an update records the hashes it is about
  to write in a journal, so the next build knows the old and the new files as its own.
  Staging folders left by a killed build are removed by the next one.
- With ``base``, a pristine copy of every generated file is kept under ``.ffc/base/`` (for
  ``ffc update``'s three-way merge). The copies are generated files like any other (manifest,
  journal, atomic renames) and are replaced after the run's own files, so a killed update leaves
  each copy either the old build's or the new one's, never ahead of a file it is the base of.
- ``edits`` puts other bytes on disk than the generated ones (``ffc update``'s merges of the
  user's edits): the manifest still records the generated file, so the file counts as edited
  afterwards, and the journal does not vouch for it (a killed update must not let a later build
  overwrite the user's merged edits).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None

MANIFEST = ".ffc-manifest.json"
JOURNAL = ".ffc-pending.json"  # an update in progress: every hash its files may have on disk
BASE_DIR = ".ffc/base"  # pristine copies of the generated files, when write_run(base=True)
STAGING = ".ffc-tmp-"  # staging folders are ".<run name>.ffc-tmp-XXXXXXXX" beside the run directory


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


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_file(path, data)
        if "/" not in name:  # scripts that start with #! are executable
            os.chmod(path, 0o755 if data.startswith(b"#!") else 0o644)


class _Staging:
    """A private folder beside the run directory, locked while its build runs so that another
    build's cleanup leaves it alone (the lock is on the folder itself, so it survives a rename)."""

    def __init__(self, run_dir: Path):
        self.path = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}{STAGING}", dir=run_dir.parent))
        self._fd = _lock(self.path, wait=True)

    def __enter__(self) -> _Staging:
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.path.is_dir():
                shutil.rmtree(self.path, ignore_errors=True)
        finally:
            if self._fd is not None:
                os.close(self._fd)


def _lock(folder: Path, wait: bool) -> int | None:
    """An exclusive lock on ``folder`` (its descriptor), or None without fcntl; BlockingIOError when held."""
    if fcntl is None:
        return None
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_old_staging(folder: Path) -> bool:
    """A staging folder of an ffc before the ``.ffc-tmp-`` names: it holds only files its manifest lists."""
    try:
        listed = set(json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"])
        found = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return found <= listed | {MANIFEST}


def _clean_stale(run_dir: Path) -> None:
    """Remove the staging folders that killed builds of ``run_dir`` left beside it."""
    ours = f".{run_dir.name}{STAGING}"
    old = re.compile(re.escape(f".{run_dir.name}.") + r"[a-z0-9_]{8}")  # tempfile.mkdtemp's names
    try:
        entries = list(os.scandir(run_dir.parent))
    except OSError:
        return
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        folder = Path(entry.path)
        if entry.name.startswith(ours):
            try:
                fd = _lock(folder, wait=False)
            except OSError:  # BlockingIOError: a build is using it; others: not ours to judge
                continue
            try:
                shutil.rmtree(folder, ignore_errors=True)
            finally:
                if fd is not None:
                    os.close(fd)
        elif old.fullmatch(entry.name) and _is_old_staging(folder):
            shutil.rmtree(folder, ignore_errors=True)


def _safe_name(name: object) -> bool:
    """A name a manifest may list: a relative path inside the run directory."""
    if not isinstance(name, str) or not name or "\0" in name or "\\" in name:
        return False
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and "." not in name.split("/")


def _read_hashes(path: Path, run_dir: Path, force: bool) -> dict[str, set[str]] | None:
    """name -> hashes from a manifest ({"files": {name: hash}}) or a journal ({"files": {name: [hash, ...]}});
    None when the file is absent, or damaged and ``force`` is given."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["files"]
        hashes = {name: {value} if isinstance(value, str) else set(value) for name, value in entries.items()}
        if not all(_safe_name(name) and all(isinstance(h, str) for h in values) for name, values in hashes.items()):
            raise ValueError("a name outside the run directory")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        if force:
            return None
        raise WriteError(
            f"{path} is damaged: rebuild with --force if ffc built {run_dir} (files you edited there are then "
            "overwritten), or remove the directory and build again"
        ) from None
    return hashes


def _current(path: Path) -> str | None:
    """The hash of the file at ``path``; None when nothing is there. A link, a folder or an unreadable
    file in a generated file's place is something the user put there: it matches no hash."""
    if not os.path.lexists(path):
        return None
    if path.is_symlink() or not path.is_file():
        return "not a file"
    try:
        return _sha(path.read_bytes())
    except OSError as exc:
        return f"unreadable: {exc.strerror}"


def write_run(
    run_dir: Path,
    files: dict[str, bytes],
    force: bool = False,
    base: bool = False,
    edits: dict[str, bytes] | None = None,
) -> list[str]:
    """Write ``files`` into ``run_dir``; returns the names of files whose content changed. ``base``
    also keeps pristine copies under ``.ffc/base/``; ``edits`` (name -> bytes) are written instead of
    those generated files, whose edit the caller has merged (see the module docstring)."""
    run_dir = Path(run_dir)
    files = dict(files)
    edits = dict(edits or {})
    if base:  # after the run's files in the dict: written after them
        files.update({f"{BASE_DIR}/{name}": data for name, data in list(files.items())})
    files[MANIFEST] = _manifest(files)
    disk = {name: edits.get(name, data) for name, data in files.items()}
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(run_dir)

    if not os.path.lexists(run_dir):
        with _Staging(run_dir) as staging:
            _write_tree(staging.path, disk)
            os.chmod(staging.path, 0o755)
            os.rename(staging.path, run_dir)
        return sorted(files)

    if run_dir.is_symlink() or not run_dir.is_dir():
        raise WriteError(f"{run_dir} exists and is not a directory: choose another output directory")
    previous = _read_hashes(run_dir / MANIFEST, run_dir, force)
    pending = _read_hashes(run_dir / JOURNAL, run_dir, force)
    if previous is None and pending is None and any(run_dir.iterdir()) and not force:
        raise WriteError(
            f"{run_dir} exists and was not built by ffc: choose another output directory, or pass --force "
            "to write into it (files already there are kept unless ffc generates a file of the same name)"
        )
    # Every hash a file of an ffc build may have here: the last finished build's, and those of a build
    # that was killed before it finished (its journal), whichever of them reached the disk.
    own: dict[str, set[str]] = {}
    for hashes in (previous or {}, pending or {}):
        for name, digests in hashes.items():
            own.setdefault(name, set()).update(digests)
    current = {name: _current(run_dir / name) for name in set(own) | set(files)}

    edited = sorted(
        name for name in own if current[name] is not None and current[name] not in own[name] and name not in edits
    )
    clobbered = [name for name in files if name not in own and name not in edits and os.path.lexists(run_dir / name)]
    details = [f"{name} (edited since the last build)" for name in edited if name != MANIFEST]
    details += [f"{name} (not written by ffc)" for name in clobbered if name != MANIFEST]
    if details and not force:
        raise WriteError(
            f"{run_dir}: would overwrite " + ", ".join(details) + ". Move your changes into the spec, "
            "run `ffc update` to merge them with the new build, or pass --force to overwrite."
        )

    new = {name: _sha(data) for name, data in files.items()}
    to_write = [name for name in files if name != MANIFEST and current[name] != _sha(disk[name])]
    # Generated files the new build no longer produces go, unless the user changed them.
    obsolete = [name for name in own if name not in files and current[name] in own[name]]
    if to_write or obsolete or current[MANIFEST] != new[MANIFEST]:
        with _Staging(run_dir) as staging:
            _write_tree(staging.path, {name: disk[name] for name in to_write + [MANIFEST]})
            journal = {name: sorted(own.get(name, set()) | {new[name]}) for name in files if name != MANIFEST}
            journal.update({name: sorted(own[name]) for name in own if name not in files})
            _write_file(staging.path / JOURNAL, json.dumps({"generated_by": "ffc", "files": journal}).encode())
            # From here on, a kill leaves old and new files mixed: the journal vouches for both.
            os.replace(staging.path / JOURNAL, run_dir / JOURNAL)
            for name in to_write:
                (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging.path / name, run_dir / name)
            for name in obsolete:
                os.unlink(run_dir / name)
            os.replace(staging.path / MANIFEST, run_dir / MANIFEST)  # the manifest last: it vouches for the rest
    if pending is not None or os.path.lexists(run_dir / JOURNAL):
        os.unlink(run_dir / JOURNAL)
    return sorted(to_write + obsolete)
