"""What actually trained a run: library versions, hardware and the hashes of the data files read.

train.py calls ``record_provenance`` once its data is loaded; it writes ``output/ffc_provenance.json``,
which ``ffc check`` compares with the lock (the environment and data the run was built for).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
from pathlib import Path

FILE_NAME = "ffc_provenance.json"
# The distributions a run can import (requirements.txt pins a subset of these) plus torch.
LIBRARIES = (
    "ffc",
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "datasets",
    "tokenizers",
    "matplotlib",
    "tensorboard",
    "bitsandbytes",
    "deepspeed",
)


def installed_versions(names=LIBRARIES) -> dict:
    """name -> installed version (None when absent), from package metadata: nothing is imported."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_hashes(dataset_dir: Path, registry: dict, names: list) -> dict:
    """relative path -> sha256 of the local files of the named datasets: the files load_datasets reads
    (the same registry lookup), keyed as the lock keys them."""
    from .data.registry import data_files, resolve

    hashes = {}
    for attr in resolve(Path(dataset_dir), list(dict.fromkeys(names)), registry):
        for path in data_files(Path(dataset_dir), attr):
            if path.is_file():
                hashes[path.relative_to(dataset_dir).as_posix()] = sha256_file(path)
    return hashes


def _cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; platform.processor() is often empty there)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict:
    """CPU and accelerator names and counts of this machine (torch only if train.py imported it)."""
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpus": [],
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
    }
    torch = __import__("sys").modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def record_provenance(output_dir: Path, dataset_dir: Path, registry: dict, datasets: list) -> Path | None:
    """Write output_dir/ffc_provenance.json (on the main process only; others return None)."""
    if os.environ.get("RANK", "0") != "0":
        return None
    record = {
        "library_versions": installed_versions(),
        "hardware": hardware(),
        "data": {
            "dataset_dir": os.path.normpath(os.path.abspath(dataset_dir)),
            "sha256": data_hashes(dataset_dir, registry, datasets),
        },
    }
    path = Path(output_dir) / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{FILE_NAME}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees it half-written
    return path
