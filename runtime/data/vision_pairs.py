"""Preference stages with images (dpo, orpo, simpo, kto): what the encoders and TRL's trainers need.

The encoders of ``ffc.runtime.data.pairs`` take an ``ImageTokens`` (ffc.runtime.data.multimodal) to write
each prompt's ``<image>`` as the model's processor does; a pair's chosen and rejected responses share the
prompt's images. ``VisionBatchCollator`` wraps the text collator the trainer would use and adds the pixels.
TRL's own vision path (``DataCollatorForVisionPreference``) tokenises text with a processor at
every batch, which would throw away ffc's exact template rendering and masks; this keeps them.
"""

from __future__ import annotations

from typing import Iterable

from .multimodal import ImageTokens

# TRL's trainers switch to their own vision pipeline when a row has an "images" column; ffc's rows
# are tokenised already, so the paths travel under this name instead (see ``for_trl``).
IMAGE_FILES = "image_files"


def for_trl(dataset):
    """Tokenised rows with their image paths renamed so that TRL keeps to its pre-tokenised path."""
    return dataset.rename_column("images", IMAGE_FILES) if "images" in dataset.column_names else dataset


class VisionBatchCollator:
    """``collator``'s batch of pre-tokenised rows plus their images' pixels and, beside every ``input_ids`` of
    the batch, the token types the model reads (as the family's processor makes them: ``ImageTokens``).

    ``copies``: how many sequences of the batch hold each row's prompt, in row order (DPO stacks all
    chosen sequences, then all rejected ones: 2; KTO: 1, its KL sequences use the same prompts)."""

    def __init__(self, collator, images: ImageTokens, copies: int = 1):
        self.collator = collator
        self.images = images
        self.copies = copies

    def __call__(self, features: Iterable[dict]) -> dict:
        import torch

        features = list(features)
        paths = [path for feature in features for path in feature.get(IMAGE_FILES) or []]
        batch = self.collator([{k: v for k, v in feature.items() if k != IMAGE_FILES} for feature in features])
        for prefix in ("", "KL_"):  # KTO's batches also hold the mismatched (KL) sequences
            if prefix + "input_ids" in batch:
                types = self.images.token_types(batch[prefix + "input_ids"])
                batch.update({prefix + key: value for key, value in types.items()})
        pixels = self.images.pixels(paths)
        batch.update({key: torch.cat([value] * self.copies) for key, value in pixels.items()})
        return batch
