"""``dataset_info.json`` in LLaMA-Factory's format: which files a dataset name means and how to read them.

Pure Python (no torch, no datasets): the compiler uses it to check names, copy the
entries a run uses and hash their files at build time.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

FORMATS = ("alpaca", "sharegpt", "openai")
# Column defaults per format (LLaMA-Factory's); a dataset's "columns" entry overrides them.
DEFAULT_COLUMNS = {
    "alpaca": {"prompt": "instruction", "query": "input", "response": "output", "history": None, "system": None},
    "sharegpt": {"messages": "conversations", "system": None, "tools": None},
    "openai": {"messages": "messages", "system": None, "tools": None},
}
DEFAULT_TAGS = {
    "sharegpt": {
        "role_tag": "from",
        "content_tag": "value",
        "user_tag": "human",
        "assistant_tag": "gpt",
        "observation_tag": "observation",
        "function_tag": "function_call",
        "system_tag": "system",
    },
    "openai": {
        "role_tag": "role",
        "content_tag": "content",
        "user_tag": "user",
        "assistant_tag": "assistant",
        "observation_tag": "tool",
        "function_tag": "function",
        "system_tag": "system",
    },
}
KNOWN_KEYS = {
    "file_name", "hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name",
    "formatting", "ranking", "columns", "tags", "subset", "split", "num_samples", "folder",
}  # fmt: skip
KNOWN_COLUMNS = {
    "prompt", "query", "response", "history", "system", "tools", "messages", "images", "videos",
    "audios", "chosen", "rejected", "kto_tag",
}  # fmt: skip
DATA_SUFFIXES = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".arrow": "arrow", ".txt": "text"}


class RegistryError(ValueError):
    pass


@dataclass(frozen=True)
class DatasetAttr:
    name: str
    source: Literal["file", "hub"]
    path: str  # file or folder name relative to dataset_dir, or the hub repository id
    formatting: str = "alpaca"
    ranking: bool = False
    columns: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    subset: Optional[str] = None
    split: str = "train"
    num_samples: Optional[int] = None
    folder: Optional[str] = None

    def column(self, key: str) -> Optional[str]:
        return self.columns.get(key, DEFAULT_COLUMNS[self.formatting].get(key))

    def tag(self, key: str) -> str:
        return self.tags.get(key, DEFAULT_TAGS.get(self.formatting, DEFAULT_TAGS["sharegpt"])[key])


def _fail(info_path: Path, name: str, message: str) -> RegistryError:
    return RegistryError(f"{info_path}: dataset {name!r}: {message}")


def parse_entry(info_path: Path, name: str, entry: Any) -> DatasetAttr:
    if not isinstance(entry, dict):
        raise _fail(info_path, name, "an entry must be an object with file_name or hf_hub_url")
    unknown = sorted(set(entry) - KNOWN_KEYS)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(KNOWN_KEYS), n=1)
        raise _fail(info_path, name, f"unknown key {unknown[0]!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
    formatting = entry.get("formatting", "alpaca")
    if formatting not in FORMATS:
        raise _fail(info_path, name, f"formatting {formatting!r} is not one of {', '.join(FORMATS)}")
    columns = entry.get("columns") or {}
    bad = sorted(set(columns) - KNOWN_COLUMNS)
    if bad:
        raise _fail(info_path, name, f"unknown column key {bad[0]!r} (known: {', '.join(sorted(KNOWN_COLUMNS))})")
    if "file_name" in entry:
        source, path = "file", entry["file_name"]
    elif "hf_hub_url" in entry:
        source, path = "hub", entry["hf_hub_url"]
    else:
        raise _fail(info_path, name, "needs file_name (a local file) or hf_hub_url (a hub dataset)")
    return DatasetAttr(
        name=name,
        source=source,
        path=path,
        formatting=formatting,
        ranking=bool(entry.get("ranking", False)),
        columns=dict(columns),
        tags=dict(entry.get("tags") or {}),
        subset=entry.get("subset"),
        split=entry.get("split", "train"),
        num_samples=entry.get("num_samples"),
        folder=entry.get("folder"),
    )


def read_registry(dataset_dir: Path) -> dict[str, Any]:
    info_path = Path(dataset_dir) / "dataset_info.json"
    try:
        return json.loads(info_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"{info_path}: not found; dataset_dir must hold a dataset_info.json") from None
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{info_path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None


def resolve(dataset_dir: Path, names: list[str], registry: Optional[dict] = None) -> list[DatasetAttr]:
    info_path = Path(dataset_dir) / "dataset_info.json"
    registry = read_registry(dataset_dir) if registry is None else registry
    attrs = []
    for name in names:
        if name not in registry:
            close = difflib.get_close_matches(name, list(registry), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; it has: {', '.join(sorted(registry)) or 'nothing'}"
            raise RegistryError(f"{info_path}: no dataset named {name!r}{hint}")
        attrs.append(parse_entry(info_path, name, registry[name]))
    return attrs


def data_files(dataset_dir: Path, attr: DatasetAttr) -> list[Path]:
    """The local files of a dataset (a file, or every data file of a folder), sorted."""
    if attr.source != "file":
        return []
    target = Path(dataset_dir) / attr.path
    if target.is_dir():
        return sorted(p for p in target.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES)
    return [target]


def file_kind(paths: list[Path]) -> str:
    kinds = {DATA_SUFFIXES.get(p.suffix) for p in paths}
    if None in kinds or len(kinds) != 1:
        names = ", ".join(p.name for p in paths[:3])
        raise RegistryError(f"cannot tell the format of {names}: use one of {', '.join(DATA_SUFFIXES)}")
    return kinds.pop()
