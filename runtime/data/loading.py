"""From dataset names to tokenised training rows, on top of Hugging Face ``datasets``.

The steps a generated train.py calls, in order:
``load_datasets`` -> ``split_validation`` -> ``tokenize_dataset`` -> ``pack_dataset``.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import os
import re
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from ..errors import UserError
from ..hubs import HUB_DATASETS, load_hub_dataset
from .convert import RowError, converter, describe
from .media import MEDIA_KEYS, attach, media_columns, texts_of
from .registry import DatasetAttr, RegistryError, data_files, file_kind, parse_entry
from .tokenize import IGNORE_INDEX, Stats

log = logging.getLogger("ffc.data")
# Placeholders in rows that failed (they are filtered out).
_EMPTY = {"messages": [], "label": False, "images": [], "videos": []}
_FIX_ROW = "Fix the row, or set data.on_bad_row: skip to skip bad rows."
# Bad rows skipped at loading travel to tokenize_dataset's Stats on the dataset object (datasets' own
# transforms drop the attribute; load_datasets, split_validation and tokenize_dataset carry it).
_SKIPPED = "_ffc_skipped_rows"


class DataError(UserError, ValueError):
    """Bad data, with the file and row to look at."""


_FORMATS = {
    "json": "a JSON file (a list of row objects) or JSON lines (one object per line), in UTF-8",
    "csv": "a CSV file with a header row, in UTF-8",
    "text": "a UTF-8 text file",
    "parquet": "a Parquet file",
    "arrow": "an Arrow file",
}


def _root_cause(exc: BaseException) -> str:
    """The innermost message of an exception chain: datasets wraps the parser's reason in a generic error."""
    messages, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if str(exc).strip():
            messages.append(str(exc).strip())
        exc = exc.__cause__ or exc.__context__
    return messages[-1].rstrip(".") if messages else "no reason given"


def _decode(data: bytes) -> tuple[Optional[str], str]:
    """(text, "") of UTF-8 bytes, or (None, what is wrong and what to do)."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return None, "the file is UTF-32 text, but ffc reads UTF-8. Re-save it as UTF-8."
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data[:2]:
        return None, "the file is UTF-16 text, but ffc reads UTF-8. Re-save it as UTF-8."
    try:
        return data.decode("utf-8-sig"), ""
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        return None, (
            f"line {line}: the file is not UTF-8 text (byte 0x{data[exc.start]:02x} at column {exc.start - line_start + 1}; "
            "perhaps Latin-1 or Windows-1252). Re-save it as UTF-8."
        )


def _json_problem(text: str) -> str:
    """The first reason a JSON or JSON-lines text cannot be rows, or ""."""
    if text.lstrip().startswith("["):  # one document: a list of rows
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            return f"line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}. Fix the JSON there."
        if not data:
            return "the file holds an empty list: it has no rows. Add rows, or remove the dataset from data.dataset."
        if not all(isinstance(item, str) for item in data):  # a list of strings is a list of texts
            for number, item in enumerate(data, start=1):
                if not isinstance(item, dict):
                    return f"row {number} is {describe(item)}, not an object. Make every row a JSON object ({{...}})."
        return ""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = ...  # not one document: JSON lines
    if data is not ...:
        if isinstance(data, dict):
            return ""
        return (
            f"the file holds {describe(data)}, not rows. Make it a list of objects ([{{...}}, {{...}}]) "
            "or one JSON object per line."
        )
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            return (
                f"line {number}, column {exc.colno}: invalid JSON: {exc.msg}. "
                "Fix the line: each line of a JSON-lines file is one complete JSON object."
            )
        if not isinstance(row, dict):
            return f"line {number} is {describe(row)}, not an object. Make each line one JSON object ({{...}})."
    return ""


def _csv_problem(text: str) -> str:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header:
            return "the file has no header row. Put the column names on the first line."
        rows = 0
        for row in reader:
            rows += 1
            if len(row) > len(header):
                return (
                    f"line {reader.line_num}: {len(row)} fields where the header has {len(header)}. "
                    'Quote fields that contain commas ("a, b"), or fix the line.'
                )
    except csv.Error as exc:
        return f"line {reader.line_num}: {exc}. Fix the line."
    return "" if rows else "the file has a header but no rows. Add rows, or remove the dataset from data.dataset."


def _file_problem(path: Path, kind: str) -> str:
    """Why a local data file cannot be read, found by reading it again slowly (only after a read failed)."""
    data = path.read_bytes()
    if not data.strip():
        return "the file is empty. Add rows to it, or remove the dataset from data.dataset."
    if kind not in ("json", "csv", "text"):
        return ""
    text, problem = _decode(data)
    if problem:
        return problem
    return _json_problem(text) if kind == "json" else _csv_problem(text) if kind == "csv" else ""


def _unreadable(attr: DatasetAttr, dataset_dir: Path, exc: BaseException) -> DataError:
    """A DataError naming the file, the line and the reason a dataset could not be read."""
    files = data_files(dataset_dir, attr)
    kind = ""
    if files:
        kind = file_kind(files)
        for path in files:
            problem = _file_problem(path, kind)
            if problem:
                return DataError(f"{path}: {problem}")
    source = ", ".join(map(str, files)) if files else f"hub dataset {attr.path}"
    hint = f" Check that it is {_FORMATS[kind]}." if kind in _FORMATS else ""
    return DataError(f"dataset {attr.name!r}: cannot read {source}: {_root_cause(exc)}.{hint}")


def _csv_options(path: Path) -> dict:
    """Read every CSV column as text: a cell "007", "1.50" or "NA" stays what was written
    (pandas would make them 7, 1.5 and a missing value)."""
    from datasets import Features, Value

    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}  # the read fails and _unreadable says why
    if not header or len(set(header)) != len(header):
        return {}
    return {"features": Features({name: Value("string") for name in header}), "keep_default_na": False}


def _read(attr: DatasetAttr, dataset_dir: Path, streaming: bool, cache_dir: Optional[str]):
    import datasets

    if attr.source in HUB_DATASETS:
        return load_hub_dataset(attr.source, attr.path, attr.subset, attr.folder, attr.split, streaming, cache_dir)
    if attr.source == "hub":
        return datasets.load_dataset(
            attr.path,
            name=attr.subset,
            data_dir=attr.folder,
            split=attr.split,
            streaming=streaming,
            cache_dir=cache_dir,
        )
    files = data_files(dataset_dir, attr)
    missing = [str(p) for p in files if not p.exists()]
    if missing or not files:
        raise DataError(
            f"dataset {attr.name!r}: {missing[0] if missing else dataset_dir / attr.path} not found. "
            "Check its file_name in dataset_info.json and data.dataset_dir."
        )
    try:
        kind = file_kind(files)
    except RegistryError as exc:
        raise DataError(f"dataset {attr.name!r}: {exc}") from None
    options = _csv_options(files[0]) if kind == "csv" else {}
    try:
        return datasets.load_dataset(
            kind, data_files=[str(p) for p in files], split="train", streaming=streaming, cache_dir=cache_dir, **options
        )
    except Exception as exc:  # the parser's reason is deep in the chain: find the line and say what to do
        raise _unreadable(attr, dataset_dir, exc) from None


def _convert_batch(
    batch: dict, indices: list[int], attr: DatasetAttr, kind: str, media_dir=None, fetch_urls: bool = False
) -> dict:
    convert, keys = converter(kind)
    keys = keys + (list(MEDIA_KEYS) if media_dir is not None else [])
    out: dict = {key: [] for key in keys + ["_error", "_row"]}
    columns = list(batch)
    for i, index in enumerate(indices):
        row = {name: batch[name][i] for name in columns}
        try:
            converted, error = convert(row, attr), ""
            if media_dir is not None:  # images/videos: placeholders counted, files opened (see media)
                converted = attach(row, converted, attr, media_dir, texts_of(converted), fetch_urls)
        except RowError as exc:
            converted, error = {}, str(exc)
        for key in keys:
            out[key].append(converted.get(key, _EMPTY.get(key, "")))
        out["_error"].append(error)
        out["_row"].append(index + 1)
    return out


def _converted_features(kind: str, media: bool = False):
    """The converted columns' types, given rather than inferred: a batch of only bad rows would
    otherwise type ``messages`` as a list of nulls, and the next batch would not fit."""
    from datasets import Features, List, Value

    text = Value("string")
    types = {"messages": List({"role": text, "content": text}), "label": Value("bool"), "_row": Value("int64")}
    types.update({key: List(text) for key in MEDIA_KEYS})
    keys = converter(kind)[1] + (list(MEDIA_KEYS) if media else [])
    return Features({key: types.get(key, text) for key in keys + ["_error", "_row"]})


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


_NUMBERS = re.compile(r"\b\d+(?:\.\d+)?\b")


def _by_reason(bad: list[tuple[int, str]]) -> list[tuple[int, int, str]]:
    """(count, first row, its message) per reason of skipped rows: "message 3" and "message 5" are one reason."""
    groups: dict[str, list] = {}
    for row, error in bad:
        group = groups.setdefault(_NUMBERS.sub("N", error), [0, row, error])
        group[0] += 1
    return [tuple(group) for group in groups.values()]


class _StreamCheck:
    """Streaming filter: bad rows arrive as training reads them; the first stops the run, or each is skipped
    (the first of each reason logged). A class, not a closure, so that data loader workers can pickle it."""

    def __init__(self, where, on_bad_row: str):
        self.where, self.on_bad_row, self.seen = where, on_bad_row, set()

    def __call__(self, row: dict) -> bool:
        error = row["_error"]
        if not error:
            return True
        if self.on_bad_row == "error":
            raise DataError(f"{self.where}: row {row['_row']}: {error}. {_FIX_ROW}")
        key = _NUMBERS.sub("N", error)
        if key not in self.seen:
            self.seen.add(key)
            log.warning("%s: skipping bad rows like row %d: %s", self.where, row["_row"], error)
        return False


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
    fetch_image_urls: bool = False,
):
    raw = _read(attr, dataset_dir, streaming, cache_dir)
    where = dataset_dir / attr.path if attr.source == "file" else f"{attr.source} dataset {attr.path}"
    if not streaming and len(raw) == 0:
        raise DataError(f"{where}: no rows. Add rows, or remove {attr.name!r} from data.dataset.")
    picks = None  # the file's row of each selected row, for messages
    if attr.num_samples and not streaming:  # dataset_info.json asks for a sample of this size
        import numpy as np

        order = np.random.default_rng(seed).permutation(len(raw))  # what raw.shuffle(seed=seed) draws
        picks = [int(order[i % len(raw)]) for i in range(attr.num_samples)]
        raw = raw.select(picks)
    if max_samples:
        raw = raw.take(max_samples) if streaming else raw.select(range(min(max_samples, len(raw))))
    columns = list(raw.features) if raw.features else None
    media = bool(media_columns(attr))
    try:
        converted = raw.map(
            _convert_batch,
            batched=True,
            with_indices=True,
            remove_columns=columns,
            features=_converted_features(kind, media),
            fn_kwargs={
                "attr": attr,
                "kind": kind,
                "media_dir": dataset_dir if media else None,
                "fetch_urls": fetch_image_urls,
            },  # fmt: skip
            **({} if streaming else {"desc": f"converting {attr.name}"}),
        )
    except UnicodeDecodeError as exc:  # pyarrow's JSON reader keeps invalid UTF-8; reading the rows finds it
        raise _unreadable(attr, dataset_dir, exc) from None
    if streaming:  # bad rows cannot be counted up front: check them as they come
        return converted.filter(_StreamCheck(where, on_bad_row)).remove_columns(["_error", "_row"])
    row_errors = converted.data.column("_error").to_pylist()
    bad = [i for i, error in enumerate(row_errors) if error]
    skipped = Counter()
    if bad:
        number = (lambda i: picks[i] + 1) if picks else (lambda i: i + 1)
        first = bad[0]
        if on_bad_row == "error":
            more = f" ({len(bad) - 1} more bad row{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
            raise DataError(f"{where}: row {number(first)}: {row_errors[first]}{more}. {_FIX_ROW}")
        if len(bad) == len(row_errors):
            raise DataError(
                f"{where}: every row is bad ({_rows(len(bad))}), e.g. row {number(first)}: {row_errors[first]}. "
                "Fix the rows: skipping them all leaves nothing to train on."
            )
        reasons = _by_reason([(number(i), row_errors[i]) for i in bad])
        log.warning(
            "%s: skipped %d bad rows of %d (data.on_bad_row: skip):\n%s", where, len(bad), len(row_errors),
            "\n".join(f"  {count} like row {row}: {error}" for count, row, error in reasons),
        )  # fmt: skip
        skipped = Counter({f"{where}: {error} (first: row {row})": count for count, row, error in reasons})
        converted = converted.select([i for i, error in enumerate(row_errors) if not error])
    return _with_skipped(converted.remove_columns(["_error", "_row"]), skipped)


def _skipped_of(dataset) -> Counter:
    return getattr(dataset, _SKIPPED, None) or Counter()


def _with_skipped(dataset, skipped: Counter):
    if skipped:
        setattr(dataset, _SKIPPED, skipped)
    return dataset


def load_datasets(
    dataset_dir: str | Path,
    registry: dict,
    names: list[str],
    kind: str,
    *,
    mix_strategy: str = "concat",
    interleave_probs: Optional[list[float]] = None,
    seed: int = 42,
    media: bool = False,
    hub: Optional[str] = None,
    **kwargs,
):
    """Load, convert and mix the named datasets of a registry (the run's dataset_info.json).

    ``media``: the run was built for images (ffc build decided it from dataset_info.json); a text run
    refuses a dataset with media columns rather than train on its text without the pictures.
    ``hub``: "modelscope" or "openmind" when the spec downloads from that hub (see parse_entry)."""
    import datasets

    dataset_dir = Path(dataset_dir)
    info = dataset_dir / "dataset_info.json"
    parts = []
    for name in names:
        if name not in registry:
            raise DataError(f"dataset {name!r} is not in the run's dataset_info.json. Add it there, or fix the name.")
        attr = parse_entry(info, name, registry[name], hub)
        if attr.ranking and kind != "pairs":
            raise DataError(
                f"dataset {name!r} is ranking (preference) data: this run needs {kind}, not pairs. "
                "Use it with a preference stage, or choose another dataset."
            )
        if kind == "pairs" and not attr.ranking:
            raise DataError(
                f"dataset {name!r} has no preference pairs: this run needs a dataset marked ranking: true "
                "with chosen and rejected responses. Choose such a dataset, or another stage."
            )
        if media_columns(attr) and not media:
            raise DataError(
                f"dataset {name!r} has {' and '.join(media_columns(attr))}, which this script cannot use: either the "
                "run was built for text only (rebuild it with ffc build once its dataset_info.json names the column, "
                "with a vision-language template such as qwen2_vl), or it is eval.py's generation scoring, which "
                "takes no images yet. Nothing is trained or scored on the text without its pictures."
            )
        parts.append(load_one(attr, dataset_dir, kind, seed=seed, **kwargs))
    skipped = sum((_skipped_of(part) for part in parts), Counter())
    if any(MEDIA_KEYS[0] in (part.column_names or []) for part in parts):  # text-only datasets next to media ones
        parts = [_with_media_columns(part) for part in parts]
    if len(parts) == 1:
        return parts[0]
    if mix_strategy == "concat":
        return _with_skipped(datasets.concatenate_datasets(parts), skipped)
    mixed = datasets.interleave_datasets(
        parts,
        probabilities=interleave_probs or None,
        seed=seed,
        stopping_strategy="first_exhausted" if mix_strategy == "interleave_under" else "all_exhausted",
    )
    return _with_skipped(mixed, skipped)


def _with_media_columns(dataset):
    """A text-only dataset given empty media columns, so that it mixes with multimodal ones."""
    from datasets import List, Value

    if MEDIA_KEYS[0] in (dataset.column_names or []):
        return dataset
    skipped = _skipped_of(dataset)
    dataset = dataset.map(lambda row: dict.fromkeys(MEDIA_KEYS, []))
    for key in MEDIA_KEYS:
        dataset = dataset.cast_column(key, List(Value("string")))
    return _with_skipped(dataset, skipped)


def split_validation(dataset, val_size: float, seed: int, streaming: bool = False):
    """(train, eval): ``val_size`` is a fraction below 1, or a number of samples."""
    if val_size <= 0:
        return dataset, None
    if streaming:
        count = int(val_size)
        return dataset.skip(count), dataset.take(count)
    size = int(val_size) if val_size >= 1 else val_size
    split = dataset.train_test_split(test_size=size, seed=seed)
    return _with_skipped(split["train"], _skipped_of(dataset)), split["test"]  # the training stats report them


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
    if not streaming and len(dataset) == 0:  # datasets.map would not even create the columns below
        raise DataError(
            f"no {name} samples: the {name} data has no rows. Add rows, or check data.max_samples and data.val_size."
        )
    columns = list(dataset.features) if dataset.features else None
    num_proc = None if streaming else workers_for(len(dataset), num_proc)
    extra = {} if streaming else {"num_proc": num_proc, "desc": f"tokenizing {name}"}
    with _single_threaded_tokenizers(num_proc):
        tokenized = dataset.map(
            encoder.encode_batch, batched=True, batch_size=batch_size, remove_columns=columns, **extra
        )
    if streaming:
        return tokenized.filter(lambda row: not row["_drop"]).remove_columns(["_drop", "_truncated", "_trained"]), None
    table = tokenized.data.table
    import pyarrow.compute as pc

    id_columns = [name for name in table.column_names if name.endswith("_ids") or name == "input_ids"]
    lengths = [sum(values) for values in zip(*(pc.list_value_length(table.column(n)).to_pylist() for n in id_columns))]
    stats = Stats.from_columns(
        table.column("_drop").to_pylist(),
        table.column("_truncated").to_pylist(),
        lengths,
        table.column("_trained").to_pylist(),
    )
    stats.skipped = _skipped_of(dataset)
    log.info("%s data: %s", name, stats.summary())
    if sum(stats.dropped.values()):
        tokenized = tokenized.filter(lambda drop: not drop, input_columns="_drop")
    if len(tokenized) == 0:
        raise DataError(
            f"no usable {name} samples: every one was dropped, for the reasons below. Fix the data, or the "
            f"settings the reasons name (e.g. data.cutoff_len, data.template).\n{stats.summary()}"
        )
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


def _marked(tokenizer, ids, labels) -> str:
    """Decoded tokens, the trained spans (labels not ignored) «like this»."""
    pieces, start = [], 0
    for end in range(1, len(ids) + 1):
        if end == len(ids) or (labels[end] != IGNORE_INDEX) != (labels[start] != IGNORE_INDEX):
            text = tokenizer.decode(ids[start:end], skip_special_tokens=False)
            pieces.append(f"«{text}»" if labels[start] != IGNORE_INDEX else text)
            start = end
    return "".join(pieces)


def _preview_row(tokenizer, row: dict, number: int) -> list[str]:
    def decode(ids) -> str:
        return tokenizer.decode(ids, skip_special_tokens=False)

    if "input_ids" in row:  # text, conversations: one sequence, trained spans marked
        ids, labels = row["input_ids"], row["labels"]
        trained = sum(label != IGNORE_INDEX for label in labels)
        return [f"===== sample {number}: {len(ids)} tokens, {trained} trained =====", _marked(tokenizer, ids, labels)]
    prompt = row["prompt_ids"]
    if "chosen_ids" in row:  # pairs: one prompt, both responses trained
        chosen, rejected = row["chosen_ids"], row["rejected_ids"]
        return [
            f"===== sample {number}: prompt {len(prompt)} tokens, chosen {len(chosen)}, rejected {len(rejected)} =====",
            decode(prompt),
            f"----- chosen -----\n«{decode(chosen)}»",
            f"----- rejected -----\n«{decode(rejected)}»",
        ]
    if "completion_ids" in row:  # kto: one labelled response
        completion = row["completion_ids"]
        label = "desirable" if row["label"] else "undesirable"
        return [
            f"===== sample {number}: prompt {len(prompt)} tokens, completion {len(completion)} ({label}) =====",
            decode(prompt) + f"«{decode(completion)}»",
        ]
    # prompts (ppo, grpo): the model generates the responses; the reference answer goes to the rewards
    lines = [
        f"===== sample {number}: prompt {len(prompt)} tokens (the model writes the response) =====",
        decode(prompt),
    ]
    if row.get("answer"):
        lines.append(f"----- reference answer -----\n{row['answer']}")
    return lines


def preview(dataset, tokenizer, count: int = 3, stats: Optional[Stats] = None) -> str:
    """The first tokenised samples as the model sees them, trained spans marked «like this».

    Works for every kind of tokenised data: input_ids/labels (text, conversations), prompt_ids with
    chosen_ids/rejected_ids (pairs), completion_ids (kto), or prompt_ids alone (prompts)."""
    lines = []
    for number, row in enumerate(dataset.select(range(min(count, len(dataset)))), start=1):
        lines += _preview_row(tokenizer, row, number)
    if stats is not None:
        lines.append("===== totals =====")
        lines.append(stats.summary())
    if {"input_ids", "chosen_ids", "completion_ids"} & set(dataset.column_names):  # prompts have no trained tokens
        lines.append("«...» marks the tokens the loss is computed on.")
    text = "\n".join(lines)
    if "images" in dataset.column_names:  # hundreds of vision tokens per picture: shown as one token x count
        text = _RUNS.sub(lambda m: f"{m.group(1)}×{len(m.group(0)) // len(m.group(1))}", text)
    return text


# A special token repeated (vision tokens: <|image_pad|>, <image>, <image_soft_token>, <IMG_CONTEXT>, ...).
_RUNS = re.compile(r"(<\|?[A-Za-z_]+\|?>)\1{2,}")


def load_registry(path: str | Path) -> dict:
    path = Path(path)
    try:
        registry = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: not found. Check data.dataset_dir, or rebuild the run (ffc build).") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text. Re-save it as UTF-8.") from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}. Fix the JSON there."
        ) from None
    if not isinstance(registry, dict):
        raise DataError(f"{path}: the top level is {describe(registry)}; it must be an object of dataset entries.")
    return registry
