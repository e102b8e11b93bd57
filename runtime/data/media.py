"""Images and videos of multimodal rows (LLaMA-Factory's layout).

A row names its media in the dataset's ``images``/``videos`` columns (a list of paths relative to
the dataset directory, or one path) and marks where each goes with ``<image>``/``<video>`` in the
text. Converted rows carry ``images`` and ``videos`` as absolute paths; each file is opened here
(decoded for images), so a missing, unreadable or corrupt file is that row's error, not a crash
in the middle of training.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .convert import RowError, describe

IMAGE_PLACEHOLDER = "<image>"
VIDEO_PLACEHOLDER = "<video>"
MEDIA = (("images", IMAGE_PLACEHOLDER), ("videos", VIDEO_PLACEHOLDER))
MEDIA_KEYS = ("images", "videos")
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".flv", ".m4v"}


def media_columns(attr) -> list[str]:
    """The media kinds (images, videos) a dataset names in its dataset_info.json columns."""
    return [key for key, _ in MEDIA if attr.column(key)] if attr.formatting in ("alpaca", "sharegpt", "openai") else []


def has_media(entry_columns: dict | None) -> bool:
    """Whether a dataset_info.json ``columns`` object names image or video columns (pure, for the build)."""
    return bool(entry_columns) and any(entry_columns.get(key) for key, _ in MEDIA)


def _paths(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if not isinstance(value, list):
        raise RowError(f"{name!r} must be a list of file paths, got {describe(value)}")
    for number, item in enumerate(value, start=1):
        if not isinstance(item, str) or not item:
            raise RowError(f"{name!r} entry {number} must be a file path, got {describe(item)}")
    return list(value)


def _placeholders(texts: list[str], placeholder: str) -> int:
    return sum(text.count(placeholder) for text in texts)


def _check_image(path: Path) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()  # decode: a truncated or corrupt file fails here, not in the training loop
    except UnidentifiedImageError:
        raise RowError(f"image {path} is not an image file PIL can read (corrupt, or an unsupported format)") from None
    except OSError as exc:
        raise RowError(f"image {path} cannot be read ({exc.strerror or exc})") from None


def _check_video(path: Path) -> None:
    try:
        with open(path, "rb") as file:
            if not file.read(16):
                raise RowError(f"video {path} is empty")
    except OSError as exc:
        raise RowError(f"video {path} cannot be read ({exc.strerror or exc})") from None


def attach(row: dict, converted: dict, attr, dataset_dir: Path, texts: list[str]) -> dict:
    """``converted`` with ``images``/``videos`` (absolute paths), after checking the placeholders in
    ``texts`` match the row's media and that each file can be read. Raises RowError otherwise."""
    for key, placeholder in MEDIA:
        name = attr.column(key)
        if not name:
            converted[key] = []
            continue
        paths = _paths(row.get(name), name)
        found = _placeholders(texts, placeholder)
        if found != len(paths):
            raise RowError(
                f"{found} {placeholder} placeholder{'s' if found != 1 else ''} in the text but "
                f"{len(paths)} {'file' if len(paths) == 1 else 'files'} in {name!r}: each {key[:-1]} needs "
                f"exactly one {placeholder} where it belongs"
            )
        resolved = []
        for path in paths:
            full = Path(path) if os.path.isabs(path) else Path(dataset_dir) / path
            if not full.is_file():
                raise RowError(f"{key[:-1]} {full} not found (paths are relative to the dataset directory)")
            (_check_image if key == "images" else _check_video)(full)
            resolved.append(str(full))
        converted[key] = resolved
    return converted


def texts_of(converted: dict) -> list[str]:
    """The texts of a converted row in which placeholders may stand (messages and responses)."""
    texts = [m["content"] for m in converted.get("messages", [])]
    return texts + [converted[k] for k in ("chosen", "rejected") if isinstance(converted.get(k), str)]
