"""``dataset_info.json`` in LLaMA-Factory's format: which files a dataset name means and how to read them.

Pure Python (no torch, no datasets): the compiler uses it to check names, copy the
entries a run uses and hash their files at build time.
"""

from __future__ import annotations

import difflib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from ..errors import UserError

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
KNOWN_TAGS = set(DEFAULT_TAGS["sharegpt"])
# Entries whose value is a name or path (text), and those that may also be null.
TEXT_KEYS = ("file_name", "hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name", "split")
OPTIONAL_TEXT_KEYS = ("subset", "folder")
MAX_INFO_BYTES = 64 * 1024 * 1024  # LLaMA-Factory's own registry is ~50 KB
MAX_FOLDER_ENTRIES = 50_000  # a dataset folder is walked for data files: stop before walking a whole disk
DATA_SUFFIXES = {
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".txt": "text",
}


class RegistryError(UserError, ValueError):
    """A dataset_info.json that cannot be used: the user's to fix, so shown without a traceback."""


@dataclass(frozen=True)
class DatasetAttr:
    name: str
    source: Literal["file", "hub", "modelscope", "openmind"]  # hub: Hugging Face's
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


def _shown(value: Any) -> str:
    """A name as it can be printed (escaped when it holds NULs, lone surrogates or control characters)."""
    text = str(value)
    return text if text.isprintable() else repr(text)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    kind = {bool: "a boolean", int: "a number", float: "a number", str: "text", list: "a list", dict: "an object"}
    shown = json.dumps(value)[:60] if isinstance(value, (bool, int, float, str)) else ""
    return kind.get(type(value), type(value).__name__) + (f" ({shown})" if shown else "")


def _fail(info_path: Path, name: str, message: str) -> RegistryError:
    return RegistryError(f"{_shown(info_path)}: dataset {name!r}: {message}")


def _text_problem(value: str) -> str:
    if "\0" in value:
        return "holds a NUL character (\\u0000)"
    if any("\ud800" <= c <= "\udfff" for c in value):
        return "holds a lone surrogate (a \\ud800-\\udfff escape without its pair)"
    return ""


def _text(info_path: Path, name: str, key: str, value: Any, optional: bool = False) -> Optional[str]:
    """``value`` when it is usable text (a name, a path or a hub id), else a RegistryError naming the key."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _fail(info_path, name, f"{key} must be text, not {_describe(value)}")
    if not value.strip():
        raise _fail(info_path, name, f"{key} is empty: write the name, or remove the key")
    problem = _text_problem(value)
    if problem:
        raise _fail(info_path, name, f"{key} {problem}: write the name without it")
    return value


def _names(info_path: Path, name: str, key: str, value: Any, known: set) -> dict:
    """A ``columns`` or ``tags`` object: known keys mapped to text (a column may be null: not used)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        example = '{"prompt": "instruction"}' if key == "columns" else '{"role_tag": "from"}'
        raise _fail(info_path, name, f"{key} must be an object such as {example}, not {_describe(value)}")
    for item, target in value.items():
        if item not in known:
            close = difflib.get_close_matches(item, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
            raise _fail(info_path, name, f"unknown {key} key {_shown(item)!r}; {hint}")
        if target is not None or key == "tags":
            _text(info_path, name, f"{key}.{item}", target)
    return dict(value)


def parse_entry(info_path: Path, name: str, entry: Any, hub: Optional[str] = None) -> DatasetAttr:
    """One dataset_info.json entry, checked key by key: every problem is a RegistryError naming the key.

    ``hub`` ("modelscope" or "openmind", the spec's use_modelscope_hub / use_openmind_hub) picks that
    hub's address where an entry has several; an entry with only ms_hub_url or om_hub_url uses it
    anyway. This is LLaMA-Factory's rule, so its registered datasets load from the same place."""
    if not isinstance(entry, dict):
        raise _fail(info_path, name, f"an entry must be an object with file_name or hf_hub_url, not {_describe(entry)}")
    unknown = sorted(set(entry) - KNOWN_KEYS)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(KNOWN_KEYS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(KNOWN_KEYS))}"
        raise _fail(info_path, name, f"unknown key {_shown(unknown[0])!r}{hint}")
    for key in TEXT_KEYS:
        if key in entry:
            _text(info_path, name, key, entry[key])
    for key in OPTIONAL_TEXT_KEYS:
        _text(info_path, name, key, entry.get(key), optional=True)
    formatting = entry.get("formatting", "alpaca")
    if formatting not in FORMATS:
        raise _fail(info_path, name, f"formatting must be one of {', '.join(FORMATS)}, not {_describe(formatting)}")
    ranking = entry.get("ranking", False)
    if not isinstance(ranking, bool):
        raise _fail(info_path, name, f"ranking must be true or false, not {_describe(ranking)}")
    num_samples = entry.get("num_samples")
    if num_samples is not None and (
        isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1
    ):
        raise _fail(info_path, name, f"num_samples must be a whole number of at least 1, not {_describe(num_samples)}")
    columns = _names(info_path, name, "columns", entry.get("columns"), KNOWN_COLUMNS)
    tags = _names(info_path, name, "tags", entry.get("tags"), KNOWN_TAGS)
    if "file_name" in entry:
        source, path = "file", entry["file_name"]
    elif "ms_hub_url" in entry and (hub == "modelscope" or "hf_hub_url" not in entry):
        source, path = "modelscope", entry["ms_hub_url"]
    elif "om_hub_url" in entry and (hub == "openmind" or "hf_hub_url" not in entry):
        source, path = "openmind", entry["om_hub_url"]
    elif "hf_hub_url" in entry:
        source, path = "hub", entry["hf_hub_url"]
    else:
        raise _fail(
            info_path, name, "needs file_name (a local file) or hf_hub_url, ms_hub_url or om_hub_url (a hub dataset)"
        )
    return DatasetAttr(
        name=name,
        source=source,
        path=path,
        formatting=formatting,
        ranking=ranking,
        columns=columns,
        tags=tags,
        subset=entry.get("subset"),
        split=entry.get("split", "train"),
        num_samples=num_samples,
        folder=entry.get("folder"),
    )


def read_registry(dataset_dir: Path) -> dict[str, Any]:
    """The parsed dataset_info.json of ``dataset_dir``: an object of entries (each checked by parse_entry)."""
    info_path = Path(dataset_dir) / "dataset_info.json"
    shown = _shown(info_path)
    try:
        # Non-blocking, then checked: a FIFO or device in its place would otherwise block or never end.
        fd = os.open(info_path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise RegistryError(f"{shown}: not found; dataset_dir must hold a dataset_info.json") from None
    except ValueError:  # os functions refuse names with a NUL byte
        raise RegistryError(f"{shown}: a path cannot contain a NUL byte; check data.dataset_dir") from None
    except OSError as exc:
        raise RegistryError(f"{shown}: cannot be opened ({exc.strerror or exc}); check data.dataset_dir") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
            raise RegistryError(f"{shown}: is {kind}; it must be a JSON file of dataset entries")
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(MAX_INFO_BYTES + 1)
    except OSError as exc:
        raise RegistryError(f"{shown}: cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_INFO_BYTES:
        raise RegistryError(f"{shown}: is larger than {MAX_INFO_BYTES >> 20} MB; is it the right file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RegistryError(
            f"{shown}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8"
        ) from None
    try:
        registry = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{shown}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except RecursionError:  # the C parser stops at Python's recursion limit
        raise RegistryError(f"{shown}: nested too deeply to read; an entry is an object of a few flat keys") from None
    if not isinstance(registry, dict):
        raise RegistryError(f"{shown}: the top level is {_describe(registry)}; it must be an object of dataset entries")
    return registry


def resolve(dataset_dir: Path, names: list[str], registry: Optional[dict] = None) -> list[DatasetAttr]:
    info_path = Path(dataset_dir) / "dataset_info.json"
    registry = read_registry(dataset_dir) if registry is None else registry
    if not isinstance(registry, dict):
        raise RegistryError(
            f"{_shown(info_path)}: the top level is {_describe(registry)}; it must be an object of dataset entries"
        )
    attrs = []
    for name in names:
        if name not in registry:
            known = [_shown(key) for key in registry]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; it has: {', '.join(sorted(known)) or 'nothing'}"
            raise RegistryError(f"{_shown(info_path)}: no dataset named {name!r}{hint}")
        attrs.append(parse_entry(info_path, name, registry[name]))
    return attrs


def data_files(dataset_dir: Path, attr: DatasetAttr) -> list[Path]:
    """The local files of a dataset (a file, or every data file of a folder), sorted."""
    if attr.source != "file":
        return []
    info_path = Path(dataset_dir) / "dataset_info.json"
    target = Path(dataset_dir) / attr.path
    try:
        if not target.is_dir():
            return [target]
        found = []
        for seen, path in enumerate(target.rglob("*"), 1):  # rglob does not enter symlinked folders: no loops
            if seen > MAX_FOLDER_ENTRIES:
                message = f"file_name {_shown(target)} holds more than {MAX_FOLDER_ENTRIES:,} files and folders"
                raise _fail(info_path, attr.name, message + "; point it at the folder of the dataset's files")
            if path.suffix in DATA_SUFFIXES and path.is_file():
                found.append(path)
        return sorted(found)
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise _fail(info_path, attr.name, f"file_name {_shown(target)}: {exc.strerror or exc}; check it") from None


def file_kind(paths: list[Path]) -> str:
    kinds = {DATA_SUFFIXES.get(p.suffix) for p in paths}
    if None in kinds or len(kinds) != 1:
        names = ", ".join(_shown(p.name) for p in paths[:3])
        raise RegistryError(f"cannot tell the format of {names}: use one of {', '.join(DATA_SUFFIXES)}")
    return kinds.pop()
