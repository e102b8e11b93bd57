"""Preference stages with images (dpo, orpo, simpo, kto): what the encoders and TRL's trainers need.

The encoders of ``ffc.runtime.data.pairs`` take a ``VisionInputs`` to expand each prompt's ``<image>``
to the processor's vision-token count; a pair's chosen and rejected responses share the prompt's
images. ``VisionBatchCollator`` wraps the text collator the trainer would use and adds the pixels.
TRL's own vision path (``DataCollatorForVisionPreference``) tokenises text with a processor at
every batch, which would throw away ffc's exact template rendering and masks; this keeps them.
"""

from __future__ import annotations

from typing import Iterable

from .multimodal import image_tokens, pixel_inputs

# TRL's trainers switch to their own vision pipeline when a row has an "images" column; ffc's rows
# are tokenised already, so the paths travel under this name instead (see ``for_trl``).
IMAGE_FILES = "image_files"


class VisionInputs:
    """The model's image markup and image processor, for encoders of prompts with images."""

    def __init__(self, tokenizer, plugin, image_processor):
        self.plugin = plugin
        self.image_processor = image_processor
        self.image_token_id = tokenizer.convert_tokens_to_ids(plugin.image_token)
        if self.image_token_id in (None, tokenizer.unk_token_id):
            raise ValueError(f"the tokenizer has no {plugin.image_token} token: is this the {plugin.name} model?")

    def expand(self, rendered, images):
        return self.plugin.expand(rendered, [image_tokens(self.image_processor, path) for path in images])

    def count(self, ids: list[int]) -> int:
        return sum(token == self.image_token_id for token in ids)


def for_trl(dataset):
    """Tokenised rows with their image paths renamed so that TRL keeps to its pre-tokenised path."""
    return dataset.rename_column("images", IMAGE_FILES) if "images" in dataset.column_names else dataset


class VisionBatchCollator:
    """``collator``'s batch of pre-tokenised rows plus their images' ``pixel_values`` and ``image_grid_thw``,
    and ``mm_token_type_ids`` (1 at image tokens) beside every ``input_ids`` of the batch.

    ``copies``: how many sequences of the batch hold each row's prompt, in row order (DPO stacks all
    chosen sequences, then all rejected ones: 2; KTO: 1, its KL sequences use the same prompts)."""

    def __init__(self, collator, image_processor, image_token_id: int, copies: int = 1):
        self.collator = collator
        self.image_processor = image_processor
        self.image_token_id = image_token_id
        self.copies = copies

    def __call__(self, features: Iterable[dict]) -> dict:
        import torch

        features = list(features)
        paths = [path for feature in features for path in feature.get(IMAGE_FILES) or []]
        batch = self.collator([{k: v for k, v in feature.items() if k != IMAGE_FILES} for feature in features])
        for prefix in ("", "KL_"):  # KTO's batches also hold the mismatched (KL) sequences
            if prefix + "input_ids" in batch:
                batch[prefix + "mm_token_type_ids"] = (batch[prefix + "input_ids"] == self.image_token_id).long()
        if paths:
            pixels = pixel_inputs(self.image_processor, paths)
            batch.update({key: torch.cat([value] * self.copies) for key, value in pixels.items()})
        return batch
