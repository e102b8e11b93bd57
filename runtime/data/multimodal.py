"""Tokenising conversations with images and videos, and batching them with their pixels.

The encoder renders a conversation with its chat template, writes each ``<image>`` and ``<video>`` as the
model's own processor writes that picture or clip (``MediaTokens``), and masks every vision token out of
the loss. ``cutoff_len`` never cuts through a media item's tokens: whole later turns are dropped instead
(counted as truncated), and a sample whose first turn alone does not fit is dropped with the reason (counted).
"""

from __future__ import annotations

from typing import Iterable

from ..chat.templates import ConversationError
from ..chat.vision import VIDEO_PLACEHOLDER, MediaError, VisionPlugin, media_turns
from ..errors import UserError
from .media import image_source
from .packing import Collator
from .tokenize import IGNORE_INDEX, ConversationEncoder, MaskOptions
from .video import frame_list


def open_images(images) -> list:
    """RGB PIL images from paths, data: URLs (Parquet bytes, base64) or PIL images."""
    from PIL import Image

    out = []
    for image in images:
        if isinstance(image, Image.Image):
            out.append(image.convert("RGB"))
            continue
        with Image.open(image_source(image)) as opened:
            out.append(opened.convert("RGB"))
    return out


def _video_name(video) -> str:
    """How an error names a video: its file, its first frame's file, or where it came from."""
    if isinstance(video, bytes):
        return "sent in the request"
    if isinstance(video, tuple):
        return "(a blank filler clip)"
    frames = frame_list(video)
    return f"of {len(frames)} frames from {frames[0]}" if frames else str(video)


class MediaTokens:
    """How a family writes images and videos in its token stream, asked of the model's own transformers processor.

    Each family expands an image differently (LLaVA-1.5: 576 ``<image>``; LLaVA-NeXT: a count that
    depends on the picture's size and its anyres tiles; Gemma 3: 256 soft tokens between start/end
    markers and blank lines; Idefics3: a grid of tiles; Qwen2-VL: patches merged 2x2). Rather than a rule
    per family here, ffc asks the processor: its ``replace_image_token`` is the text transformers itself puts
    in place of the image's placeholder when it prepares model inputs, so the tokens always agree with the
    ``pixel_values`` the same processor makes in the collator (the one place where families differ). The
    plugin's ``marker`` (what the chat template writes) keeps the text around it exactly as the official
    template does. The pixels are processed here to count and again per batch in the collator: the
    tokenised dataset then keeps paths, not pixels.

    Videos likewise, through the processor's ``replace_video_token`` (Qwen3-VL: timestamped frame groups) and
    its ``video_processor`` (ffc's ``QwenVideoProcessor``, which ``load_processor`` gives it for video runs).
    """

    def __init__(self, processor, plugin: VisionPlugin):
        if processor.image_token != plugin.image_token:
            raise UserError(
                f"the {plugin.name} template writes images with {plugin.image_token}, but this model's processor "
                f"({type(processor).__name__}) expands {processor.image_token}: choose the template of the model's family"
            )
        self.processor, self.plugin = processor, plugin
        self.video_processor = getattr(processor, "video_processor", None) if plugin.video_token else None
        self.vision_ids = set(processor.image_token_ids)  # the tokens that stand for pixels: never trained
        if self.video_processor is not None:
            self.vision_ids |= set(processor.video_token_ids)
        if processor.tokenizer.unk_token_id in self.vision_ids or None in self.vision_ids:
            raise UserError(f"the tokenizer has no {processor.image_token} token: is this a {plugin.name} model?")

    def _process(self, images) -> dict:
        """The pixels as the processor's own call makes them (with its image settings, e.g. Idefics3's tiles)."""
        processor = self.processor
        settings = processor._merge_kwargs(tokenizer_init_kwargs=processor.tokenizer.init_kwargs)["images_kwargs"]
        return processor.image_processor(open_images(images), **{**settings, "return_tensors": "pt"})

    def expansions(self, images) -> list[str]:
        """What the processor puts in place of each image's placeholder, in order (``plugin.expand`` takes them)."""
        if not images:
            return []
        processed = self._process(images)
        return [self.processor.replace_image_token(processed, i) for i in range(len(images))]

    def _process_videos(self, videos, pixels: bool = True) -> dict:
        if self.video_processor is None:
            raise MediaError(
                f"this run reads no videos (the {self.plugin.name} template or this processor has no video input)"
            )
        read = [self.video_processor.read(video, _video_name(video)) for video in videos]
        return self.video_processor(read, pixels=pixels)

    def video_expansions(self, videos) -> list[str]:
        """What the processor puts in place of each video's placeholder, in order."""
        if not videos:
            return []
        processed = self._process_videos(videos, pixels=False)  # the text needs the grids, not the pixels
        return [self.processor.replace_video_token(processed, i) for i in range(len(videos))]

    def expand(self, rendered, images, videos=()):
        """``rendered`` with each ``<image>`` and ``<video>`` written as the processor writes that picture or clip."""
        return self.plugin.expand(rendered, self.expansions(images), self.video_expansions(videos))

    def tokens_of(self, image) -> int:
        """Vision tokens of one image (a path or a PIL image)."""
        block = self.plugin.block("image", self.expansions([image])[0])
        return self.count(self.processor.tokenizer(block, add_special_tokens=False)["input_ids"])

    def count(self, ids) -> int:
        """Vision tokens among ``ids``."""
        return sum(token in self.vision_ids for token in ids)

    def pixels(self, images, videos=()) -> dict:
        """The tensors of ``images`` and ``videos`` the model reads (``pixel_values``, ``pixel_values_videos``
        and what goes with them: grid sizes, Qwen2.5-VL's seconds per frame pair, ...)."""
        processed = {**(self._process(images) if images else {}), **(self._process_videos(videos) if videos else {})}
        wanted = set(self.processor.model_input_names) - set(self.processor.unused_input_names)
        return {k: v for k, v in processed.items() if k in wanted}

    def filler(self, kind: str) -> tuple[list[int], object]:
        """Token ids and the item of a blank picture (``kind`` "images") or two-frame clip ("videos"): what a
        batch without that kind of media carries so that every process runs the vision tower alike (see
        ``VisionCollator``)."""
        from PIL import Image

        blank = Image.new("RGB", (32, 32), "white")
        item = blank if kind == "images" else (blank, blank)
        expansion = (self.expansions([item]) if kind == "images" else self.video_expansions([item]))[0]
        block = self.plugin.block(kind[:-1], expansion)
        return self.processor.tokenizer(block, add_special_tokens=False)["input_ids"], item

    def token_types(self, input_ids) -> dict:
        """The token types the model reads beside ``input_ids`` (a tensor), e.g. ``mm_token_type_ids``."""
        import torch

        return {
            key: torch.tensor(self.processor.create_mm_token_type_ids(input_ids), dtype=torch.long)
            for key in ("mm_token_type_ids", "token_type_ids")
            if key in self.processor.model_input_names
        }

    def model_inputs(self, images, input_ids, videos=()) -> dict:
        """The pixels of ``images`` and ``videos`` and the token types of ``input_ids``."""
        return {**self.pixels(images, videos), **self.token_types(input_ids)}


class VisionConversationEncoder(ConversationEncoder):
    """``ConversationEncoder`` for rows with ``images`` and ``videos``: output rows keep the paths of the media
    their tokens stand for."""

    def __init__(self, tokenizer, template, opts: MaskOptions, images: MediaTokens):
        super().__init__(tokenizer, template, opts)
        self.images = images

    def encode_batch(self, batch: dict) -> dict:
        out = {"input_ids": [], "labels": [], "images": [], "videos": [], "_drop": [], "_truncated": [], "_trained": []}
        prepared = []
        for messages, system, tools, images, videos in zip(
            batch["messages"], batch["system"], batch["tools"], batch["images"], batch["videos"]
        ):
            try:
                rendered = self.render(messages, system, tools)
                turns = (media_turns(rendered), media_turns(rendered, VIDEO_PLACEHOLDER))
                rendered = self.images.expand(rendered, images, videos)
                prepared.append((rendered, turns, images, videos))
            except (ConversationError, MediaError) as exc:
                prepared.append(f"cannot render: {exc}")
            except OSError as exc:  # the file changed since loading checked it
                prepared.append(f"cannot read an image or video: {exc}")
        encodings = self._encode([p[0].text if isinstance(p, tuple) else "" for p in prepared])
        for item, encoding in zip(prepared, encodings):
            result = item if isinstance(item, str) else self._encode_media(*item, encoding)
            if isinstance(result, str):
                result = ([], [], [], [], result, False, 0)
            for key, value in zip(out, result):
                out[key].append(value)
        return out

    def _encode_media(self, rendered, turns, images, videos, encoding):
        ids, labels, trained, spans = self._labelled(rendered, encoding)
        vision = self.images.vision_ids
        labels = [IGNORE_INDEX if token in vision else label for token, label in zip(ids, labels)]  # never trained
        truncated = len(ids) > self.opts.cutoff_len
        if truncated:
            # Cut only at the end of a turn (after its response): never inside an image's tokens.
            ends = {turn: max(b for a, b, t in spans if t == turn) for turn in {t for _, _, t in spans}}
            fitting = sorted((end, turn) for turn, end in ends.items() if end <= self.opts.cutoff_len)
            if not fitting:
                count = sum(token in vision for token in ids)
                return (
                    f"the first turn with its media ({count} vision tokens) is longer than cutoff_len; "
                    "raise data.cutoff_len or lower image_max_pixels (video_max_pixels, video_maxlen)"
                )
            end, last = fitting[-1]
            ids, labels = ids[:end], labels[:end]
            images = [image for image, turn in zip(images, turns[0]) if turn <= last]
            videos = [video for video, turn in zip(videos, turns[1]) if turn <= last]
        trained = sum(label != IGNORE_INDEX for label in labels)
        if not trained:
            return "no trained tokens left after truncation" if truncated else "no trained tokens"
        return ids, labels, list(images), list(videos), "", truncated, trained


class VisionCollator(Collator):
    """Pads ids and labels like ``Collator`` and adds what the model reads beside them: the batch's pixels
    (images and video frames) and the token types, as the family's processor makes them
    (``MediaTokens.model_inputs``).

    ``every_batch``: the media kinds ("images", "videos") each batch must hold. A batch without one gets a
    blank one (``MediaTokens.filler``) after the first row's last token, untrained: with several processes,
    one that skipped the vision tower while another ran it would leave DeepSpeed ZeRO-3's parameter gathering
    (and DDP's gradient reduction of a trained tower) waiting for each other. Causal attention keeps the
    filler out of every real token's view, and its labels out of the loss: the loss is unchanged."""

    def __init__(self, pad_token_id: int, images: MediaTokens, every_batch: tuple[str, ...] = ()):
        super().__init__(pad_token_id)
        self.images = images
        self.fillers = {kind: images.filler(kind) for kind in every_batch}

    def __call__(self, features: Iterable[dict]) -> dict:
        features = list(features)
        for kind, (ids, item) in self.fillers.items():
            if not any(feature.get(kind) for feature in features):
                first = features[0]
                features[0] = {
                    **first,
                    "input_ids": list(first["input_ids"]) + ids,
                    "labels": list(first["labels"]) + [IGNORE_INDEX] * len(ids),
                    kind: [item],
                }
        batch = super().__call__(features)
        paths = [path for feature in features for path in feature.get("images") or []]
        videos = [video for feature in features for video in feature.get("videos") or []]
        try:
            batch.update(self.images.model_inputs(paths, batch["input_ids"], videos))
        except (MediaError, OSError) as exc:  # a file that changed or went away since the data was loaded
            raise UserError(f"a training batch cannot be made: {exc}; restore the file, or rebuild the data") from None
        return batch
