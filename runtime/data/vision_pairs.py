"""Preference stages with images and videos (dpo, orpo, simpo, kto): what the encoders and TRL's trainers need.

The encoders of ``ffc.runtime.data.pairs`` take an ``MediaTokens`` (ffc.runtime.data.multimodal) to write
each prompt's ``<image>`` and ``<video>`` as the model's processor does; a pair's chosen and rejected responses
share the prompt's images and videos. ``VisionBatchCollator`` wraps the text collator the trainer would use and
adds the pixels. TRL's own vision path (``DataCollatorForVisionPreference``) tokenises text with a processor at
every batch, which would throw away ffc's exact template rendering and masks; this keeps them.
"""

from __future__ import annotations

from typing import Iterable

from .multimodal import MediaTokens

# TRL's trainers switch to their own vision pipeline when a row has an "image" or "images" column (trl 1.16 reads
# no "videos" column, but a later one may); ffc's rows are tokenised already, so the media paths travel under
# these names instead (see ``for_trl``).
IMAGE_FILES = "image_files"
VIDEO_FILES = "video_files"
_RENAMED = {"images": IMAGE_FILES, "videos": VIDEO_FILES}


def for_trl(dataset):
    """Tokenised rows with their image and video paths renamed so that TRL keeps to its pre-tokenised path."""
    return dataset.rename_columns({k: v for k, v in _RENAMED.items() if k in dataset.column_names})


class VisionBatchCollator:
    """``collator``'s batch of pre-tokenised rows plus the pixels of their images and videos and, beside every
    ``input_ids`` of the batch, the token types the model reads (as the family's processor makes them:
    ``MediaTokens``).

    ``copies``: how many sequences of the batch hold each row's prompt, in row order (DPO stacks all
    chosen sequences, then all rejected ones: 2; KTO: 1, its KL sequences use the same prompts). Every
    per-item tensor (pixels, ``image_grid_thw``, ``video_grid_thw``, Qwen2.5-VL's ``second_per_grid_ts``) is
    repeated likewise: the batch's items in row order, once per copy."""

    def __init__(self, collator, images: MediaTokens, copies: int = 1):
        self.collator = collator
        self.images = images
        self.copies = copies

    def __call__(self, features: Iterable[dict]) -> dict:
        import torch

        features = list(features)
        media = {key: [item for f in features for item in f.get(key) or []] for key in (IMAGE_FILES, VIDEO_FILES)}
        batch = self.collator([{k: v for k, v in f.items() if k not in media} for f in features])
        for prefix in ("", "KL_"):  # KTO's batches also hold the mismatched (KL) sequences
            if prefix + "input_ids" in batch:
                types = self.images.token_types(batch[prefix + "input_ids"])
                batch.update({prefix + key: value for key, value in types.items()})
        pixels = self.images.pixels(media[IMAGE_FILES], media[VIDEO_FILES])
        batch.update({key: torch.cat([value] * self.copies) for key, value in pixels.items()})
        return batch

    def model_inputs(self, batch: dict, input_ids) -> dict:
        """What a model reads beside ``input_ids`` (ORPO's and CPO's chosen and rejected sequences, concatenated):
        the batch's pixels and the token types of those ids."""
        types = {key: value.to(input_ids.device) for key, value in self.images.token_types(input_ids).items()}
        names = set(self.images.processor.model_input_names) - {"input_ids", "attention_mask"} - set(types)
        return {**{key: value for key, value in batch.items() if key in names}, **types}
