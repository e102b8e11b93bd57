"""Videos of multimodal rows: frames sampled as LLaMA-Factory samples them, and Qwen-VL's video pixels.

A video is a file PyAV can decode (mp4, webm, ...) or a list of frame images (LLaMA-Factory's layout for
pre-extracted frames). Frames are sampled uniformly at ``video_fps`` frames per second of video, at most
``video_maxlen`` of them (a frame list counts as a clip filmed at ``video_fps``).

``QwenVideoProcessor`` turns sampled frames into ``pixel_values_videos``/``video_grid_thw`` for the Qwen-VL
families. Written here because transformers' video processors need torchvision, whose CPU build does
not install everywhere a run is built or tested (the index's wheel links CUDA), while the image
processors have a PIL backend; ffc uses that backend for images so that token counts do not depend on
what is installed, and this keeps videos consistent with it. The layout is Qwen's: frames in pairs
(``temporal_patch_size``), 14-px patches merged 2x2, checked against transformers' image processor (a
still video equals the picture). The processor's own ``replace_video_token`` still writes the text.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..chat.vision import MediaError
from ..errors import UserError


@dataclass(frozen=True)
class VideoSettings:
    """How frames are sampled and sized: the spec's ``model.video_fps``, ``video_maxlen``, ``video_max_pixels``
    and ``video_min_pixels`` (their defaults are the schema's), written into the run's scripts."""

    fps: float
    maxlen: int
    max_pixels: int
    min_pixels: int


def frame_list(reference) -> list[str] | None:
    """The frames of a converted row's video when it is a frame list (stored as a JSON list), else None (a file:
    a path that exists is a file even when it reads like a list)."""
    if not isinstance(reference, str) or not reference.startswith("[") or os.path.isfile(reference):
        return None
    try:
        frames = json.loads(reference)
    except ValueError:
        return None
    return frames if isinstance(frames, list) and all(isinstance(frame, str) for frame in frames) else None


def _sample(total: int, wanted: float, maxlen: int) -> list[int]:
    """Indices of ``min(total, maxlen, wanted)`` frames spread evenly from the first frame to the last."""
    count = max(1, min(total, maxlen, math.floor(wanted)))
    if count == 1:
        return [0]
    return [int(i * (total - 1) / (count - 1)) for i in range(count)]


def _import_av():
    try:
        import av
    except ImportError:
        raise UserError("reading video files needs PyAV: pip install 'ffc[video]' (or pip install av)") from None
    return av


def first_frame(path: str | Path, picture: bool = True):
    """A video file's first frame (an RGB PIL image; ``picture=False``: only decoded, None returned, the check
    loading makes of every video); MediaError with the reason otherwise."""
    av = _import_av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError("has no video stream")
            frame = next(container.decode(video=0))
            return frame.to_image().convert("RGB") if picture else None
    except StopIteration:
        raise MediaError("has no frames") from None
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"cannot be decoded ({exc})") from None


def probe_video(path: str | Path) -> str:
    """Why a video file cannot be used ('' when it decodes: its first frame is read)."""
    try:
        first_frame(path, picture=False)
    except MediaError as exc:
        return str(exc)
    return ""


# Bounds on a video sent to serve.py (its bytes): decoding cost grows with frames and frame size, which a
# small, well-compressed request can make huge.
MAX_API_FRAMES = 18_000  # ten minutes at 30 frames per second
MAX_API_FRAME_AREA = 4096 * 4096


def read_video(reference: str | bytes | tuple, settings: VideoSettings, frame_size=None):
    """(frames as RGB PIL images, transformers ``VideoMetadata`` with the sampled indices and the frame rate) of a
    video file, a frame list (see ``frame_list``), a video's bytes (the API's data: URLs; bounded by the
    ``MAX_API_*`` limits) or a tuple of PIL frames (all kept). ``frame_size(height, width) -> (height, width)``:
    each kept frame is resized to it as it is decoded (only the sampled frames, at their final size, are held)."""
    from PIL import Image
    from transformers.video_utils import VideoMetadata

    if isinstance(reference, tuple):  # frames already in memory (the collator's blank filler clip)
        pictures = [frame.convert("RGB") for frame in reference]
        indices = list(range(len(pictures)))
        return pictures, VideoMetadata(total_num_frames=len(pictures), fps=settings.fps, frames_indices=indices)
    frames = frame_list(reference)
    if frames is not None:
        indices = _sample(len(frames), len(frames), settings.maxlen)
        pictures = []
        for index in indices:
            with Image.open(frames[index]) as image:
                pictures.append(_sized(image.convert("RGB"), frame_size))
        return pictures, VideoMetadata(total_num_frames=len(frames), fps=settings.fps, frames_indices=indices)
    av = _import_av()
    untrusted = isinstance(reference, bytes)
    try:
        with av.open(io.BytesIO(reference) if untrusted else reference) as container:
            return _sample_container(container, settings, frame_size, untrusted)
    except av.error.FFmpegError as exc:
        raise MediaError(f"cannot be decoded ({exc})") from None


def _sized(image, frame_size):
    if frame_size is None:
        return image
    height, width = frame_size(image.height, image.width)
    return image if image.size == (width, height) else image.resize((width, height), _bicubic())


def _bicubic():
    from PIL import Image

    return Image.Resampling.BICUBIC  # as transformers' Qwen image processors resample


def _sample_container(container, settings: VideoSettings, frame_size, untrusted: bool):
    """Sampled frames of an open PyAV container, decoded in one pass keeping only those, each resized as it
    comes (a long or large video's frames would not fit in memory)."""
    from transformers.video_utils import VideoMetadata

    if not container.streams.video:
        raise MediaError("has no video stream")
    stream = container.streams.video[0]
    if untrusted and (stream.width or 0) * (stream.height or 0) > MAX_API_FRAME_AREA:
        raise MediaError(f"has {stream.width}x{stream.height} frames, more than this server decodes")
    rate = float(stream.average_rate or stream.guessed_rate or 0) or settings.fps
    total = stream.frames
    if not total:  # no count in the header: count the packets (one per frame), then go back to the start
        total = sum(1 for packet in container.demux(stream) if packet.size)
        container.seek(0)
    if not total:
        raise MediaError("has no frames")
    if untrusted and total > MAX_API_FRAMES:
        raise MediaError(f"has {total} frames, more than the {MAX_API_FRAMES} this server decodes")
    duration = float(stream.duration * stream.time_base) if stream.duration else total / rate
    indices = _sample(total, duration * settings.fps, settings.maxlen)
    wanted, pictures = set(indices), {}
    for number, frame in enumerate(container.decode(stream)):
        if number in wanted:
            pictures[number] = _sized(frame.to_image().convert("RGB"), frame_size)
        if number >= indices[-1]:
            break
    if not pictures:
        raise MediaError("has no frames that decode")
    last = pictures[max(pictures)]  # a header that counts more frames than the file holds: the last one stands in
    frames = [pictures.get(index, last) for index in indices]
    metadata = VideoMetadata(total_num_frames=total, fps=rate, duration=duration, frames_indices=indices)
    return frames, metadata


def smart_size(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen-VL's resize rule: sides multiples of ``factor``, area within the bounds, aspect ratio kept
    (transformers' ``smart_resize`` for Qwen2-VL: the same function, imported there from its video module)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    return smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)


# A Qwen-VL processor class -> the class of its torchvision-based video processor in transformers.
VIDEO_PROCESSORS = {
    "Qwen2VLProcessor": "Qwen2VLVideoProcessor",
    "Qwen2_5_VLProcessor": "Qwen2VLVideoProcessor",
    "Qwen3VLProcessor": "Qwen3VLVideoProcessor",
}


class QwenVideoProcessor:
    """The video processor of Qwen2-VL, Qwen2.5-VL and Qwen3-VL without torchvision (see the module's
    docstring): what a Qwen-VL processor reads of its ``video_processor`` (``merge_size``,
    ``temporal_patch_size``) and a call that returns the model's video inputs.

    Patch sizes and normalisation come from the model's image processor (the same vision tower reads both).
    """

    model_input_names = ["pixel_values_videos", "video_grid_thw"]

    def __init__(self, image_processor, settings: VideoSettings):
        self.patch_size = image_processor.patch_size
        self.merge_size = image_processor.merge_size
        self.temporal_patch_size = image_processor.temporal_patch_size
        self.image_mean = image_processor.image_mean
        self.image_std = image_processor.image_std
        self.settings = settings

    def frame_size(self, height: int, width: int) -> tuple[int, int]:
        """The size a frame of ``height`` x ``width`` is resized to (Qwen's rule with the run's pixel bounds)."""
        factor = self.patch_size * self.merge_size
        return smart_size(height, width, factor, self.settings.min_pixels, self.settings.max_pixels)

    def read(self, video, name: str):
        """``read_video`` of one video at this processor's frame size; MediaError naming ``name`` otherwise."""
        try:
            return read_video(video, self.settings, self.frame_size)
        except MediaError as exc:
            raise MediaError(f"video {name} {exc}") from None
        except OSError as exc:  # a frame image or file that went away or cannot be read
            raise MediaError(f"video {name} cannot be read ({exc.strerror or exc})") from None

    def transformers_config(self, processor_class: str) -> dict:
        """The run's frame settings as transformers' own Qwen video processor reads them from
        ``video_preprocessor_config.json`` (export: for ``AutoProcessor`` and vLLM, which have torchvision).

        Close to training, not identical: their sampler spaces frames without reaching the last one and keeps
        at least ``min_frames`` (2 here: one frame pair); Qwen2-VL's bounds each frame as ffc does, Qwen3-VL's
        bounds the whole clip (frames x height x width), so its budget is a frame's bound times ``video_maxlen``
        (a short clip may get larger frames there than in training)."""
        family = VIDEO_PROCESSORS.get(processor_class, "Qwen2VLVideoProcessor")
        per_clip = family == "Qwen3VLVideoProcessor"
        smallest, largest = self.settings.min_pixels, self.settings.max_pixels
        if per_clip:
            smallest, largest = smallest * self.temporal_patch_size, largest * self.settings.maxlen
        return {
            "video_processor_type": family,
            "processor_class": processor_class,
            "do_sample_frames": True,
            "fps": self.settings.fps,
            "min_frames": self.temporal_patch_size,
            "max_frames": self.settings.maxlen,
            "size": {"shortest_edge": smallest, "longest_edge": largest},
            **({} if per_clip else {"cap_pixels_per_frame": False}),  # each frame bounded alone, as ffc does
            "do_resize": True,
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "do_convert_rgb": True,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "patch_size": self.patch_size,
            "temporal_patch_size": self.temporal_patch_size,
            "merge_size": self.merge_size,
        }

    def frames_to_patches(self, frames: Sequence) -> tuple:
        """(patches ``[grid_t * grid_h * grid_w, 3 * temporal * patch * patch]``, (grid_t, grid_h, grid_w))."""
        import numpy as np
        from PIL import Image

        height, width = self.frame_size(frames[0].height, frames[0].width)
        mean = np.asarray(self.image_mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.image_std, dtype=np.float32)[:, None, None]
        stack = []
        for frame in frames:
            if frame.size != (width, height):
                frame = frame.resize((width, height), Image.Resampling.BICUBIC)
            pixels = np.asarray(frame, dtype=np.float32).transpose(2, 0, 1) / 255.0
            stack.append((pixels - mean) / std)
        tp, patch, merge = self.temporal_patch_size, self.patch_size, self.merge_size
        stack += [stack[-1]] * (-len(stack) % tp)  # an odd frame count: the last frame repeated, as transformers does
        video = np.stack(stack)  # (frames, channels, height, width)
        grid_t, grid_h, grid_w = len(stack) // tp, height // patch, width // patch
        patches = video.reshape(
            grid_t, tp, 3, grid_h // merge, merge, patch, grid_w // merge, merge, patch
        )  # fmt: skip
        # (t, h-blocks, w-blocks, h-in-block, w-in-block, channel, time, patch-row, patch-col): Qwen's order
        patches = patches.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
        return patches.reshape(grid_t * grid_h * grid_w, 3 * tp * patch * patch), (grid_t, grid_h, grid_w)

    def grid(self, frames: Sequence) -> tuple[int, int, int]:
        """(grid_t, grid_h, grid_w) of ``frames``: what ``frames_to_patches`` makes of them, without the pixels."""
        height, width = self.frame_size(frames[0].height, frames[0].width)
        return -(-len(frames) // self.temporal_patch_size), height // self.patch_size, width // self.patch_size

    def __call__(self, videos: Sequence[tuple], pixels: bool = True, **_) -> dict:
        """``videos``: (frames, metadata) pairs from ``read_video``. Also the seconds each temporal patch spans
        (Qwen2.5-VL's ``second_per_grid_ts``) and the metadata (Qwen3-VL writes timestamps from it).
        ``pixels=False``: the grids and metadata only (enough to write the text; tokenising needs no more)."""
        import numpy as np
        import torch

        patches, grids, seconds = [], [], []
        for frames, metadata in videos:
            if pixels:
                flat, grid = self.frames_to_patches(frames)
                patches.append(flat)
            grids.append(grid if pixels else self.grid(frames))
            seconds.append(self.temporal_patch_size / metadata.sampled_fps)
        out = {
            "video_grid_thw": torch.tensor(grids, dtype=torch.long),
            "second_per_grid_ts": torch.tensor(seconds, dtype=torch.float32),
            "video_metadata": [metadata for _, metadata in videos],
        }
        if pixels:
            out["pixel_values_videos"] = torch.from_numpy(np.concatenate(patches))
        return out
