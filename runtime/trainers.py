"""TRL's trainers, fed with ffc's pre-tokenised data.

TRL tokenises preference data from text itself, and may add a BOS or EOS that the
chat template does not render; ffc's data engine has already produced the exact
tokens (see ``ffc.runtime.data.pairs``). These subclasses only switch that step
off. They rely on TRL's dataset-preparation hooks of the pinned version (trl 1.16).
"""

from __future__ import annotations

import warnings

from trl import DPOTrainer, KTOTrainer

with warnings.catch_warnings():
    # ORPO and CPO (SimPO) live in trl.experimental in TRL 1.16, the version ffc pins and tests; its
    # notice that the API may change is ffc's to act on, not the run's user's.
    warnings.filterwarnings("ignore", message=".*experimental.*")
    from trl.experimental.cpo import CPOConfig, CPOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer
    from trl.experimental.utils import DPODataCollatorWithPadding

from .data.tokenize import IGNORE_INDEX
from .data.vision_pairs import VisionBatchCollator

# ORPOConfig and CPOConfig are re-exported: generated train.py imports them from here, under the
# warning filter above.
__all__ = [
    "CPOConfig",
    "ORPOConfig",
    "PretokenizedCPOTrainer",
    "PretokenizedDPOTrainer",
    "PretokenizedKTOTrainer",
    "PretokenizedORPOTrainer",
    "legacy_pair_collator",
    "to_legacy_pairs",
    "to_reward_pairs",
]


class PretokenizedDPOTrainer(DPOTrainer):
    """DPOTrainer on ``prompt_ids``/``chosen_ids``/``rejected_ids`` columns."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset


class PretokenizedKTOTrainer(KTOTrainer):
    """KTOTrainer on ``prompt_ids``/``completion_ids``/``label`` columns."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if not self.calculate_KL:
            return dataset

        # The KL term pairs each prompt with another sample's completion: rotate completions within each batch.
        def mismatch(batch):
            batch["KL_completion_ids"] = [batch["completion_ids"][-1]] + batch["completion_ids"][:-1]
            return batch

        return dataset.map(mismatch, batched=True, batch_size=args.per_device_train_batch_size)


class _LegacyPairs:
    """ORPO and CPO (SimPO) take pairs in TRL's older column layout, built by ``to_legacy_pairs``.

    Their forward pass gives the model tokens only; with images (``VisionBatchCollator`` put the pixels
    in the batch) the model also gets the pixels and which tokens are image tokens."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A VisionBatchCollator wraps TRL's DPODataCollatorWithPadding: evaluation may rely on its batches.
        self.use_dpo_data_collator = self.use_dpo_data_collator or isinstance(self.data_collator, VisionBatchCollator)

    def tokenize_row(self, feature, model=None):
        return feature

    def concatenated_forward(self, model, batch):
        pixels = {key: batch[key] for key in ("pixel_values", "image_grid_thw") if key in batch}
        if not pixels:
            return super().concatenated_forward(model, batch)
        image_token_id = self.model.config.image_token_id

        def forward(input_ids, **kwargs):
            return model(input_ids, mm_token_type_ids=(input_ids == image_token_id).long(), **pixels, **kwargs)

        return super().concatenated_forward(forward, batch)


def legacy_pair_collator(pad_token_id: int):
    """The collator ORPO and CPO use by default (for wrapping in a ``VisionBatchCollator``)."""
    return DPODataCollatorWithPadding(pad_token_id=pad_token_id)


class PretokenizedORPOTrainer(_LegacyPairs, ORPOTrainer):
    pass


class PretokenizedCPOTrainer(_LegacyPairs, CPOTrainer):
    pass


def to_reward_pairs(dataset):
    """``prompt_ids``/``chosen_ids``/``rejected_ids`` -> whole sequences, as RewardTrainer takes them."""

    def join(row):
        return {
            "chosen_ids": row["prompt_ids"] + row["chosen_ids"],
            "rejected_ids": row["prompt_ids"] + row["rejected_ids"],
        }

    return dataset.map(join, remove_columns=["prompt_ids"])


def to_legacy_pairs(dataset):
    """``prompt_ids``/``chosen_ids``/``rejected_ids`` -> the layout of TRL's ORPO/CPO trainers."""

    def legacy(row):
        prompt = row["prompt_ids"]
        out = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
        for side in ("chosen", "rejected"):
            ids = prompt + row[f"{side}_ids"]
            out[f"{side}_input_ids"] = ids
            out[f"{side}_attention_mask"] = [1] * len(ids)
            out[f"{side}_labels"] = [IGNORE_INDEX] * len(prompt) + row[f"{side}_ids"]
        return out

    return dataset.map(legacy, remove_columns=["prompt_ids", "chosen_ids", "rejected_ids"])
