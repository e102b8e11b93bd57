"""From dataset names to tokenised training rows, on top of Hugging Face ``datasets``.

The steps a generated train.py calls, in order:
``load_datasets`` -> ``split_validation`` -> ``tokenize_dataset`` -> ``pack_dataset``.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from .convert import RowError, converter
from .registry import DatasetAttr, RegistryError, data_files, file_kind, parse_entry
from .tokenize import IGNORE_INDEX, Stats

log = logging.getLogger("ffc.data")
_EMPTY = {"messages": [], "label": False}  # placeholders in rows that failed (they are filtered out)


class DataError(ValueError):
    """Bad data, with the file and row to look at."""


def _read(attr: DatasetAttr, dataset_dir: Path, streaming: bool, cache_dir: Optional[str]):
    import datasets

    if attr.source == "hub":
        return datasets.load_dataset(
            attr.path, name=attr.subset, data_dir=attr.folder, split=attr.split, streaming=streaming, cache_dir=cache_dir
        )
    files = data_files(dataset_dir, attr)
    missing = [str(p) for p in files if not p.exists()]
    if missing or not files:
        raise DataError(f"dataset {attr.name!r}: {missing[0] if missing else dataset_dir / attr.path} not found")
    try:
        kind = file_kind(files)
        return datasets.load_dataset(
            kind, data_files=[str(p) for p in files], split="train", streaming=streaming, cache_dir=cache_dir
        )
    except RegistryError as exc:
        raise DataError(f"dataset {attr.name!r}: {exc}") from None
    except Exception as exc:  # pyarrow/json parse errors: name the file, keep the parser's words
        raise DataError(f"dataset {attr.name!r}: cannot read {', '.join(map(str, files))}: {exc}") from None


def _convert_batch(batch: dict, indices: list[int], attr: DatasetAttr, kind: str) -> dict:
    convert, keys = converter(kind)
    out: dict = {key: [] for key in keys + ["_error", "_row"]}
    columns = list(batch)
    for i, index in enumerate(indices):
        row = {name: batch[name][i] for name in columns}
        try:
            converted, error = convert(row, attr), ""
        except RowError as exc:
            converted, error = {}, str(exc)
        for key in keys:
            out[key].append(converted.get(key, _EMPTY.get(key, "")))
        out["_error"].append(error)
        out["_row"].append(index + 1)
    return out


def load_one(
    attr: DatasetAttr,
    dataset_dir: Path,
    kind: str,
    *,
    max_samples: Optional[int] = None,
    on_bad_row: str = "error",
    streaming: bool = False,
    seed: int = 42,
    cache_dir: Optional[str] = None,
):
    raw = _read(attr, dataset_dir, streaming, cache_dir)
    if attr.num_samples and not streaming:  # dataset_info.json asks for a sample of this size
        raw = raw.shuffle(seed=seed).select([i % len(raw) for i in range(attr.num_samples)])
    if max_samples:
        raw = raw.take(max_samples) if streaming else raw.select(range(min(max_samples, len(raw))))
    where = dataset_dir / attr.path if attr.source == "file" else f"hub dataset {attr.path}"
    columns = list(raw.features) if raw.features else None
    converted = raw.map(
        _convert_batch,
        batched=True,
        with_indices=True,
        remove_columns=columns,
        fn_kwargs={"attr": attr, "kind": kind},
        **({} if streaming else {"desc": f"converting {attr.name}"}),
    )
    if streaming:  # bad rows cannot be reported up front: skip them as they come
        return converted.filter(lambda row: not row["_error"]).remove_columns(["_error", "_row"])
    errors = [(row, err) for row, err in zip(converted["_row"], converted["_error"]) if err]
    if errors:
        if on_bad_row == "error":
            row, err = errors[0]
            more = f" ({len(errors) - 1} more bad rows)" if len(errors) > 1 else ""
            raise DataError(
                f"{where}: row {row}: {err}{more}. Fix the row, or set data.on_bad_row: skip to skip bad rows."
            )
        log.warning("%s: skipped %d bad rows, e.g. row %d: %s", where, len(errors), errors[0][0], errors[0][1])
        converted = converted.filter(lambda err: not err, input_columns="_error")
    return converted.remove_columns(["_error", "_row"])


def load_datasets(
    dataset_dir: str | Path,
    registry: dict,
    names: list[str],
    kind: str,
    *,
    mix_strategy: str = "concat",
    interleave_probs: Optional[list[float]] = None,
    seed: int = 42,
    **kwargs,
):
    """Load, convert and mix the named datasets of a registry (the run's dataset_info.json)."""
    import datasets

    dataset_dir = Path(dataset_dir)
    info = dataset_dir / "dataset_info.json"
    parts = []
    for name in names:
        if name not in registry:
            raise DataError(f"dataset {name!r} is not in the run's dataset_info.json")
        attr = parse_entry(info, name, registry[name])
        if attr.ranking and kind != "pairs":
            raise DataError(f"dataset {name!r} is ranking (preference) data: this run needs {kind}, not pairs")
        if kind == "pairs" and not attr.ranking:
            raise DataError(
                f"dataset {name!r} has no preference pairs: this run needs a dataset marked ranking: true "
                "with chosen and rejected responses"
            )
        parts.append(load_one(attr, dataset_dir, kind, seed=seed, **kwargs))
    if len(parts) == 1:
        return parts[0]
    if mix_strategy == "concat":
        return datasets.concatenate_datasets(parts)
    return datasets.interleave_datasets(
        parts,
        probabilities=interleave_probs or None,
        seed=seed,
        stopping_strategy="first_exhausted" if mix_strategy == "interleave_under" else "all_exhausted",
    )


def split_validation(dataset, val_size: float, seed: int, streaming: bool = False):
    """(train, eval): ``val_size`` is a fraction below 1, or a number of samples."""
    if val_size <= 0:
        return dataset, None
    if streaming:
        count = int(val_size)
        return dataset.skip(count), dataset.take(count)
    size = int(val_size) if val_size >= 1 else val_size
    split = dataset.train_test_split(test_size=size, seed=seed)
    return split["train"], split["test"]


AUTO_WORKERS_MIN_ROWS = 20_000  # below this, starting worker processes costs more than it saves
AUTO_WORKERS_MAX = 8


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def workers_for(rows: int, num_proc: Optional[int]) -> Optional[int]:
    """Processes for a ``datasets.map``: the spec's number, or one per core for large datasets.

    Rendering and labelling are Python (one core per process); the Rust tokenizer's own threads
    only cover its part, so processes are what use every core."""
    if num_proc is not None:
        return num_proc if num_proc > 1 else None
    if rows < AUTO_WORKERS_MIN_ROWS:
        return None
    count = min(_cpu_count(), AUTO_WORKERS_MAX)
    return count if count > 1 else None


@contextmanager
def _single_threaded_tokenizers(num_proc: Optional[int]):
    """Worker processes each tokenise on one thread: the processes already fill the cores, and the
    tokenizers library would otherwise warn about (and disable) its thread pool after the fork."""
    if not num_proc:
        yield
        return
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def tokenize_dataset(dataset, encoder, *, batch_size: int = 1000, num_proc: Optional[int] = None, name: str = "train"):
    """Tokenise with ``encoder.encode_batch``; log what was truncated or dropped and why.

    ``num_proc`` None: one process per core for large datasets (see ``workers_for``)."""
    streaming = not hasattr(dataset, "__len__")
    columns = list(dataset.features) if dataset.features else None
    num_proc = None if streaming else workers_for(len(dataset), num_proc)
    extra = {} if streaming else {"num_proc": num_proc, "desc": f"tokenizing {name}"}
    with _single_threaded_tokenizers(num_proc):
        tokenized = dataset.map(encoder.encode_batch, batched=True, batch_size=batch_size, remove_columns=columns, **extra)
    if streaming:
        return tokenized.filter(lambda row: not row["_drop"]).remove_columns(["_drop", "_truncated", "_trained"]), None
    table = tokenized.data.table
    import pyarrow.compute as pc

    id_columns = [name for name in table.column_names if name.endswith("_ids") or name == "input_ids"]
    lengths = [sum(values) for values in zip(*(pc.list_value_length(table.column(n)).to_pylist() for n in id_columns))]
    stats = Stats.from_columns(
        table.column("_drop").to_pylist(), table.column("_truncated").to_pylist(), lengths, table.column("_trained").to_pylist()
    )
    log.info("%s data: %s", name, stats.summary())
    if sum(stats.dropped.values()):
        tokenized = tokenized.filter(lambda drop: not drop, input_columns="_drop")
    if len(tokenized) == 0:
        raise DataError(f"no usable {name} samples: {stats.summary()}")
    return tokenized.remove_columns(["_drop", "_truncated", "_trained"]), stats


def pack_dataset(dataset, cutoff_len: int, *, batch_size: int = 10000, num_proc: Optional[int] = None):
    """Pack tokenised samples into rows of at most ``cutoff_len`` tokens (see ``packing``)."""
    from .packing import pack_examples

    streaming = not hasattr(dataset, "__len__")
    extra = {} if streaming else {"num_proc": workers_for(len(dataset), num_proc), "desc": "packing"}
    return dataset.map(
        pack_examples, batched=True, batch_size=batch_size, fn_kwargs={"capacity": cutoff_len},
        remove_columns=list(dataset.features) if dataset.features else None, **extra,
    )  # fmt: skip


def preview(dataset, tokenizer, count: int = 3, stats: Optional[Stats] = None) -> str:
    """The first tokenised samples as the model sees them, trained spans marked «like this»."""
    lines = []
    for number, row in enumerate(dataset.select(range(min(count, len(dataset))))):
        ids, labels = row["input_ids"], row["labels"]
        trained = sum(label != IGNORE_INDEX for label in labels)
        lines.append(f"===== sample {number + 1}: {len(ids)} tokens, {trained} trained =====")
        pieces, start = [], 0
        for end in range(1, len(ids) + 1):
            if end == len(ids) or (labels[end] != IGNORE_INDEX) != (labels[start] != IGNORE_INDEX):
                text = tokenizer.decode(ids[start:end], skip_special_tokens=False)
                pieces.append(f"«{text}»" if labels[start] != IGNORE_INDEX else text)
                start = end
        lines.append("".join(pieces))
    if stats is not None:
        lines.append("===== totals =====")
        lines.append(stats.summary())
    lines.append("«...» marks the tokens the loss is computed on.")
    return "\n".join(lines)


def load_registry(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
