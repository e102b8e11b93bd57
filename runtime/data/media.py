"""Images and videos of multimodal rows (LLaMA-Factory's layout).

A row names its media in the dataset's ``images``/``videos`` columns (a list of paths relative to
the dataset directory, or one path) and marks where each goes with ``<image>``/``<video>`` in the
text. Images may also be given as their bytes (Parquet files, also as the ``{"bytes": ..., "path": ...}``
structs of a Hugging Face ``Image`` feature), ``data:`` URLs, or http(s) URLs, which are downloaded
at load time only when ``data.fetch_image_urls`` allows it. Converted rows carry ``images`` as absolute
paths or ``data:`` URLs (bytes kept in the dataset) and ``videos`` as absolute paths (a video given as
a list of frame images: the JSON list of their paths); each image and each video's first frame is
decoded here, so a missing, unreadable or corrupt one is that row's error, not a crash in the middle
of training.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
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


MAX_IMAGE_BYTES = 32 * 1024 * 1024  # an image (or serve.py's video) downloaded from a URL


def _items(value: Any, name: str, key: str) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes, dict)) or hasattr(value, "getpixel"):  # one path, bytes, struct or image
        return [value] if value else []
    if not isinstance(value, list):
        raise RowError(f"{name!r} must be a list of file paths, got {describe(value)}")
    for number, item in enumerate(value, start=1):
        frames = isinstance(item, list) and item and all(isinstance(frame, str) and frame for frame in item)
        if key == "videos" and not frames and (not isinstance(item, str) or not item):
            raise RowError(
                f"{name!r} entry {number} must be a video file path or a list of frame paths, got {describe(item)}"
            )
    return list(value)


def decode_data_url(url: str) -> bytes:
    """The bytes of a base64 ``data:`` URL; ValueError with the reason otherwise."""
    header, _, payload = url.partition(",")
    if ";base64" not in header:
        raise ValueError("a data: URL image must be base64 (data:image/png;base64,...)")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the data: URL is not valid base64") from None


def download(url: str) -> bytes:
    """The bytes at an http(s) URL (at most ``MAX_IMAGE_BYTES``); ValueError with the reason otherwise."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=20) as response:  # noqa: S310 (callers pass http(s) only)
            data = response.read(MAX_IMAGE_BYTES + 1)
    except (urllib.error.URLError, OSError) as exc:
        raise ValueError(f"{url} cannot be downloaded ({getattr(exc, 'reason', None) or exc})") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"the file at {url} is larger than {MAX_IMAGE_BYTES >> 20} MB")
    return data


def image_source(reference: str):
    """What PIL opens for a converted row's image: its file path, or the bytes of its ``data:`` URL."""
    return io.BytesIO(decode_data_url(reference)) if reference.startswith("data:") else reference


def _data_url(data: bytes) -> str:
    return "data:image;base64," + base64.b64encode(data).decode("ascii")


def _image_reference(item: Any, number: int, name: str, dataset_dir: Path, fetch_urls: bool) -> str:
    """One image of a row as a path or a ``data:`` URL, checked to decode; RowError with the reason otherwise."""
    said = f"image {number} of {name!r}"
    if isinstance(item, dict):  # a Hugging Face Image feature's struct: the bytes, else the file
        item = item.get("bytes") or item.get("path")
    if hasattr(item, "getpixel"):  # an image datasets decoded already (an Image feature)
        buffer = io.BytesIO()
        item.save(buffer, format="PNG")
        item = buffer.getvalue()
    if isinstance(item, (bytes, bytearray)):
        reference = _data_url(bytes(item))
    elif isinstance(item, str) and item.startswith("data:"):
        reference = item
    elif isinstance(item, str) and item.startswith(("http://", "https://")):
        if not fetch_urls:
            raise RowError(
                f"{said} is a URL ({item}), and downloading images is off: set data.fetch_image_urls: true "
                "(training then depends on that server), or download the files and name their paths"
            )
        try:
            reference = _data_url(download(item))
        except ValueError as exc:
            raise RowError(f"{said}: {exc}") from None
    elif isinstance(item, str) and item:
        full = Path(item) if os.path.isabs(item) else Path(dataset_dir) / item
        if not full.is_file():
            raise RowError(f"image {full} not found (paths are relative to the dataset directory)")
        _check_image(full, f"image {full}")
        return str(full)
    else:
        raise RowError(f"{said} must be a file path, image bytes or a data: URL, got {describe(item)}")
    try:
        source = image_source(reference)
    except ValueError as exc:
        raise RowError(f"{said}: {exc}") from None
    _check_image(source, said)
    return reference


def _placeholders(texts: list[str], placeholder: str) -> int:
    return sum(text.count(placeholder) for text in texts)


def _check_image(source, said: str) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as image:
            image.load()  # decode: a truncated or corrupt file fails here, not in the training loop
    except UnidentifiedImageError:
        raise RowError(f"{said} is not an image file PIL can read (corrupt, or an unsupported format)") from None
    except OSError as exc:
        raise RowError(f"{said} cannot be read ({exc.strerror or exc})") from None


def _check_video(path: Path) -> None:
    from .video import probe_video

    try:
        with open(path, "rb") as file:
            if not file.read(16):
                raise RowError(f"video {path} is empty")
    except OSError as exc:
        raise RowError(f"video {path} cannot be read ({exc.strerror or exc})") from None
    problem = probe_video(path)  # decodes the first frame: a corrupt file fails here, not mid-training
    if problem:
        raise RowError(f"video {path} {problem}")


def attach(row: dict, converted: dict, attr, dataset_dir: Path, texts: list[str], fetch_urls: bool = False) -> dict:
    """``converted`` with ``images`` (absolute paths or data: URLs) and ``videos`` (absolute paths), after
    checking the placeholders in ``texts`` match the row's media and that each can be read. Raises RowError
    otherwise. ``fetch_urls``: download http(s) images (data.fetch_image_urls)."""
    for key, placeholder in MEDIA:
        name = attr.column(key)
        if not name:
            converted[key] = []
            continue
        paths = _items(row.get(name), name, key)
        found = _placeholders(texts, placeholder)
        if found != len(paths):
            raise RowError(
                f"{found} {placeholder} placeholder{'s' if found != 1 else ''} in the text but "
                f"{len(paths)} {'file' if len(paths) == 1 else 'files'} in {name!r}: each {key[:-1]} needs "
                f"exactly one {placeholder} where it belongs"
            )
        resolved = []
        for number, path in enumerate(paths, start=1):
            if key == "images":
                resolved.append(_image_reference(path, number, name, dataset_dir, fetch_urls))
                continue
            resolved.append(_video_reference(path, dataset_dir))
        converted[key] = resolved
    return converted


def _video_reference(item: str | list, dataset_dir: Path) -> str:
    """One video of a row as its absolute path, or a frame list as the JSON list of the frames' absolute paths
    (a dataset column holds strings); each file checked to decode. RowError with the reason otherwise."""
    if isinstance(item, list):
        frames = []
        for number, frame in enumerate(item, start=1):
            full = Path(frame) if os.path.isabs(frame) else Path(dataset_dir) / frame
            if not full.is_file():
                raise RowError(f"video frame {full} not found (paths are relative to the dataset directory)")
            _check_image(full, f"frame {number} ({full}) of a video")
            frames.append(str(full))
        return json.dumps(frames)
    full = Path(item) if os.path.isabs(item) else Path(dataset_dir) / item
    if not full.is_file():
        raise RowError(f"video {full} not found (paths are relative to the dataset directory)")
    _check_video(full)
    return str(full)


def texts_of(converted: dict) -> list[str]:
    """The texts of a converted row in which placeholders may stand (messages and responses)."""
    texts = [m["content"] for m in converted.get("messages", [])]
    return texts + [converted[k] for k in ("chosen", "rejected") if isinstance(converted.get(k), str)]
