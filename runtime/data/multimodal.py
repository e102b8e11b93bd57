"""Tokenising conversations with images, and batching them with their pixels.

The encoder renders a conversation with its chat template, expands each ``<image>`` to exactly the
number of vision tokens the model's image processor produces for that picture (counted from the
image's size alone: the pixels are processed in the collator, batch by batch, so the tokenised
dataset stays small), and masks every vision token out of the loss. ``cutoff_len`` never cuts
through an image's tokens: whole later turns are dropped instead (counted as truncated), and a
sample whose first turn alone does not fit is dropped with the reason (counted).
"""

from __future__ import annotations

from typing import Iterable

from ..chat.templates import ConversationError
from ..chat.vision import MediaError, VisionPlugin
from .media import image_source
from .packing import Collator
from .tokenize import IGNORE_INDEX, ConversationEncoder, MaskOptions


def image_size(path: str) -> tuple[int, int]:
    """(height, width) from the file's header (PIL reads no pixels for this); ``path`` may be a data: URL."""
    from PIL import Image

    with Image.open(image_source(path)) as image:
        return image.height, image.width


def image_tokens(image_processor, image) -> int:
    """Vision tokens the model sees for one image (a path or a PIL image): its patches, merged
    ``merge_size`` x ``merge_size``."""
    height, width = (image.height, image.width) if hasattr(image, "height") else image_size(image)
    merge = getattr(image_processor, "merge_size", 1) or 1
    return image_processor.get_number_of_image_patches(height, width, {}) // (merge * merge)


class VisionConversationEncoder(ConversationEncoder):
    """``ConversationEncoder`` for rows with ``images``: output rows keep the paths of the images their
    tokens stand for."""

    def __init__(self, tokenizer, template, opts: MaskOptions, plugin: VisionPlugin, image_processor):
        super().__init__(tokenizer, template, opts)
        self.plugin = plugin
        self.image_processor = image_processor
        self.start_id = tokenizer.convert_tokens_to_ids(plugin.start) if plugin.start else None
        self.vision_ids = {tokenizer.convert_tokens_to_ids(plugin.image_token)}
        if plugin.video_token:
            self.vision_ids.add(tokenizer.convert_tokens_to_ids(plugin.video_token))
        if tokenizer.unk_token_id in self.vision_ids or None in self.vision_ids:
            raise ValueError(f"the tokenizer has no {plugin.image_token} token: is this the {plugin.name} model?")

    def encode_batch(self, batch: dict) -> dict:
        out = {"input_ids": [], "labels": [], "images": [], "_drop": [], "_truncated": [], "_trained": []}
        prepared = []
        for messages, system, tools, images, videos in zip(
            batch["messages"], batch["system"], batch["tools"], batch["images"], batch["videos"]
        ):
            try:
                if videos:
                    raise MediaError("videos are not supported yet: remove the videos column or use images")
                rendered = self.render(messages, system, tools)
                rendered = self.plugin.expand(rendered, [image_tokens(self.image_processor, p) for p in images])
                prepared.append((rendered, messages, images))
            except (ConversationError, MediaError) as exc:
                prepared.append(f"cannot render: {exc}")
            except OSError as exc:  # the file changed since loading checked it
                prepared.append(f"cannot read an image: {exc}")
        encodings = self._encode([p[0].text if isinstance(p, tuple) else "" for p in prepared])
        for item, encoding in zip(prepared, encodings):
            result = item if isinstance(item, str) else self._encode_media(*item, encoding)
            if isinstance(result, str):
                result = ([], [], [], result, False, 0)
            for key, value in zip(out, result):
                out[key].append(value)
        return out

    def _encode_media(self, rendered, messages, images, encoding):
        ids, labels, trained, spans = self._labelled(rendered, encoding)
        vision = self.vision_ids
        labels = [IGNORE_INDEX if token in vision else label for token, label in zip(ids, labels)]  # never trained
        truncated = len(ids) > self.opts.cutoff_len
        if truncated:
            # Cut only at the end of a turn (after its response): never inside an image's tokens.
            ends = sorted({max(b for a, b, t in spans if t == turn) for turn in {t for _, _, t in spans}})
            fitting = [end for end in ends if end <= self.opts.cutoff_len]
            if not fitting:
                count = sum(token in vision for token in ids)
                return (
                    f"the first turn with its images ({count} vision tokens) is longer than cutoff_len; "
                    "raise data.cutoff_len or lower image_max_pixels"
                )
            ids, labels = ids[: fitting[-1]], labels[: fitting[-1]]
            if self.start_id is not None:
                images = images[: ids.count(self.start_id)]
        trained = sum(label != IGNORE_INDEX for label in labels)
        if not trained:
            return "no trained tokens left after truncation" if truncated else "no trained tokens"
        return ids, labels, list(images), "", truncated, trained


class VisionCollator(Collator):
    """Pads ids and labels like ``Collator`` and adds the batch's pixels (``pixel_values``,
    ``image_grid_thw``) and the modality of each token (``mm_token_type_ids``: 1 for image tokens)."""

    def __init__(self, pad_token_id: int, image_processor, image_token_id: int):
        super().__init__(pad_token_id)
        self.image_processor = image_processor
        self.image_token_id = image_token_id

    def __call__(self, features: Iterable[dict]) -> dict:
        features = list(features)
        batch = super().__call__(features)
        paths = [path for feature in features for path in feature.get("images") or []]
        batch["mm_token_type_ids"] = (batch["input_ids"] == self.image_token_id).long()
        if paths:
            batch.update(pixel_inputs(self.image_processor, paths))
        return batch


def pixel_inputs(image_processor, paths: list[str]) -> dict:
    """The processor's tensors (``pixel_values``, ``image_grid_thw``) for the images at ``paths``, in order."""
    from PIL import Image

    images = []
    for path in paths:
        with Image.open(image_source(path)) as image:
            images.append(image.convert("RGB"))
    return image_processor(images=images, return_tensors="pt")
