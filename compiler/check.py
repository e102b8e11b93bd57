"""``ffc check``: is a run directory still what its lock and manifest describe?

It reports generated files edited or missing since the build, a spec (and --set overrides) changed
since, data files whose hash changed, library versions of this environment that differ from the
lock's, and, when the run has trained, what its ``output/ffc_provenance.json`` says differed then.
Nothing is imported but package metadata: checking a run never loads torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from ._version import __version__
from .writer import BASE_DIR, JOURNAL, MANIFEST, _safe_name

LOCK = "ffc.lock.json"
PROVENANCE = "output/ffc_provenance.json"


class CheckError(Exception):
    """The run cannot be checked at all (not a run directory)."""


@dataclass(frozen=True)
class Finding:
    kind: str  # edited, missing, damaged, spec, data, version, trained
    name: str  # the file, input or library concerned
    detail: str


def _sha(path: Path) -> Optional[str]:
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except OSError:
        return None


def _read_json(path: Path):
    """The parsed file; None when absent; ValueError (with the reason) when damaged."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{exc}") from None


def spec_hash(text: str, overrides: list) -> str:
    """The lock's spec_sha256 of a spec text and its --set overrides (as ``LoadedSpec.sha256``)."""
    from .loader import LoadedSpec

    return LoadedSpec(spec=None, path=Path("spec.yaml"), text=text, overrides=list(overrides)).sha256


def _table(node, *keys) -> dict:
    """``node[k1][k2]...`` when each is a JSON object, else {}: a hand-edited lock must not crash the check."""
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _base_version(version: Optional[str]) -> Optional[str]:
    """2.13.0+cpu -> 2.13.0: a local build tag is the same release."""
    return version.split("+", 1)[0] if version else version


def _pinned_names(run_dir: Path, lock: dict) -> list:
    """The libraries this run depends on: requirements.txt's pins and torch (installed before them)."""
    names = ["torch"]
    try:
        for line in (run_dir / "requirements.txt").read_text(encoding="utf-8").splitlines():
            name = line.split("#", 1)[0].split("==", 1)[0].strip()
            if name and name != "ffc":
                names.append(name)
    except OSError:
        names += list(_table(lock, "library_versions"))
    return list(dict.fromkeys(n for n in names if n in _table(lock, "library_versions")))


def _check_files(run_dir: Path, findings: list) -> Optional[dict]:
    try:
        manifest = _read_json(run_dir / MANIFEST)
        if manifest is not None and not isinstance(manifest.get("files"), dict):
            raise ValueError("no 'files' table")
    except (ValueError, AttributeError) as exc:
        findings.append(Finding("damaged", MANIFEST, f"cannot be read ({exc}): edits cannot be told from the build"))
        return None
    if manifest is None:
        findings.append(Finding("missing", MANIFEST, "not built by ffc, or the manifest was deleted"))
        return None
    if os.path.lexists(run_dir / JOURNAL):
        findings.append(Finding("damaged", JOURNAL, "a build was interrupted: build again to complete it"))
    for name, digest in sorted(manifest["files"].items()):
        if not _safe_name(name):
            findings.append(Finding("damaged", MANIFEST, f"names {name!r}, outside the run directory"))
            continue
        path = run_dir / name
        is_base = name.startswith(BASE_DIR + "/")
        if not os.path.lexists(path):
            detail = "pristine copy deleted: ffc update cannot merge this file" if is_base else "deleted"
            findings.append(Finding("missing", name, detail))
        elif path.is_symlink() or not path.is_file():
            findings.append(Finding("edited", name, "replaced by something that is not a file"))
        elif _sha(path) != digest:
            detail = "pristine copy changed: ffc update cannot trust it" if is_base else "edited since the build"
            findings.append(Finding("damaged" if is_base else "edited", name, detail))
    return manifest


def _check_spec(run_dir: Path, lock: dict, findings: list) -> Optional[Path]:
    relative = _table(lock, "run_paths").get("spec")
    if not isinstance(relative, str) or not relative:
        findings.append(Finding("spec", "spec", "the lock does not say where the spec is (built by an older ffc)"))
        return None
    path = run_dir / relative
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        findings.append(Finding("spec", relative, f"cannot be read ({getattr(exc, 'strerror', None) or exc})"))
        return None
    if spec_hash(text, lock.get("overrides", [])) != lock.get("spec_sha256"):
        findings.append(Finding("spec", relative, "changed since the build: `ffc update` rebuilds and merges"))
    return path


def _check_inputs(run_dir: Path, lock: dict, spec_path: Optional[Path], findings: list) -> None:
    inputs = _table(lock, "inputs", "sha256")
    dataset_dir = _table(lock, "run_paths").get("dataset_dir")
    dataset_dir = dataset_dir if isinstance(dataset_dir, str) else None
    for name, digest in sorted(inputs.items()):
        if name.startswith("reward_funcs:"):  # hashed from the spec's reward_funcs path
            if spec_path is None:
                continue
            where = Path(os.path.expanduser(name.split(":", 1)[1]))
            path = where if where.is_absolute() else spec_path.parent / where
        elif dataset_dir is None:
            continue
        else:
            path = Path(os.path.expanduser(dataset_dir)) / name
            path = Path(os.path.normpath(path if path.is_absolute() else run_dir / path))
        current = _sha(path)
        if current is None:
            findings.append(Finding("data", name, f"missing or unreadable at {path}"))
        elif current != digest:
            findings.append(Finding("data", name, "changed since the build (its sha256 differs from the lock's)"))


def _check_versions(run_dir: Path, lock: dict, findings: list) -> None:
    from ffc.runtime.provenance import installed_versions

    if lock.get("ffc_version") != __version__:
        findings.append(Finding("version", "ffc", f"built by {lock.get('ffc_version')}, this is {__version__}"))
    names = _pinned_names(run_dir, lock)
    installed = installed_versions(names)
    for name in names:
        wanted, have = lock["library_versions"][name], installed[name]
        if have is None:
            findings.append(Finding("version", name, f"not installed here (the lock pins {wanted})"))
        elif _base_version(have) != _base_version(wanted):
            findings.append(Finding("version", name, f"{have} installed, the lock pins {wanted}"))


def _check_provenance(run_dir: Path, lock: dict, findings: list) -> None:
    try:
        record = _read_json(run_dir / PROVENANCE)
    except ValueError as exc:
        findings.append(Finding("damaged", PROVENANCE, f"cannot be read ({exc})"))
        return
    if record is None:
        return  # not trained yet
    if not isinstance(record, dict):
        findings.append(Finding("damaged", PROVENANCE, "not a JSON object"))
        return
    versions = _table(record, "library_versions")
    for name in _pinned_names(run_dir, lock):
        wanted, had = lock["library_versions"][name], versions.get(name)
        if _base_version(had) != _base_version(wanted):
            findings.append(Finding("trained", name, f"trained with {had or 'none installed'}, the lock pins {wanted}"))
    if versions.get("ffc") not in (None, lock.get("ffc_version")):
        findings.append(
            Finding("trained", "ffc", f"trained with {versions['ffc']}, built by {lock.get('ffc_version')}")
        )
    read = _table(record, "data", "sha256")
    locked = {k: v for k, v in _table(lock, "inputs", "sha256").items() if not k.startswith("reward_funcs:")}
    for name in sorted(set(read) | set(locked)):
        if name not in read:
            findings.append(Finding("trained", name, "in the lock, but training did not read it"))
        elif name not in locked:
            findings.append(Finding("trained", name, "read by training, but not in the lock"))
        elif read[name] != locked[name]:
            findings.append(Finding("trained", name, "training read other contents than the lock's"))


def check_run(run_dir: Path) -> list[Finding]:
    """Every way ``run_dir`` differs from what its build recorded; empty when it is as built."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckError(f"{run_dir} is not a directory: give the run directory ffc built")
    findings: list[Finding] = []
    _check_files(run_dir, findings)
    try:
        lock = _read_json(run_dir / LOCK)
        if lock is not None and not isinstance(lock, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        findings.append(Finding("damaged", LOCK, f"cannot be read ({exc}): spec, data and versions not checked"))
        return findings
    if lock is None:
        return findings  # the manifest check reported it missing
    if not isinstance(lock.get("library_versions"), dict) or not isinstance(lock.get("inputs", {}), dict):
        findings.append(Finding("damaged", LOCK, "has no library_versions or inputs table"))
        return findings
    if not isinstance(lock.get("overrides", []), list):
        findings.append(Finding("damaged", LOCK, "its overrides are not a list"))
        return findings
    spec_path = _check_spec(run_dir, lock, findings)
    _check_inputs(run_dir, lock, spec_path, findings)
    _check_versions(run_dir, lock, findings)
    _check_provenance(run_dir, lock, findings)
    return findings


def report(run_dir: Path, findings: list[Finding]) -> str:
    if not findings:
        return f"{run_dir}: as built (files, spec, data and library versions match the lock)"
    width = max(len(f.name) for f in findings)
    lines = [f"{run_dir}: {len(findings)} difference{'s' if len(findings) > 1 else ''} from the build"]
    lines += [f"  {f.kind:8} {f.name:{width}}  {f.detail}" for f in findings]
    return "\n".join(lines)


def as_json(run_dir: Path, findings: list[Finding]) -> str:
    return json.dumps({"run": str(run_dir), "clean": not findings, "findings": [asdict(f) for f in findings]}, indent=2)
