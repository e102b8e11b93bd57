"""TRL's trainers, fed with ffc's pre-tokenised data.

TRL tokenises preference data from text itself, and may add a BOS or EOS that the
chat template does not render; ffc's data engine has already produced the exact
tokens (see ``ffc.runtime.data.pairs``). These subclasses only switch that step
off. They rely on TRL's dataset-preparation hooks of the pinned version (trl 1.16).
"""

from __future__ import annotations

import warnings

import torch
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
from .losses import causal_token_logprobs, chunked_causal_lm_loss, final_hidden_states, mean_logit

# ORPOConfig and CPOConfig are re-exported: generated train.py imports them from here, under the
# warning filter above.
__all__ = [
    "CPOConfig",
    "ChunkedCPOTrainer",
    "ChunkedORPOTrainer",
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

    Their forward pass gives the model tokens only; with images or videos (``VisionBatchCollator`` put the
    pixels in the batch) the model also gets the pixels and which tokens are image and video tokens."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A VisionBatchCollator wraps TRL's DPODataCollatorWithPadding: evaluation may rely on its batches.
        self.use_dpo_data_collator = self.use_dpo_data_collator or isinstance(self.data_collator, VisionBatchCollator)

    def tokenize_row(self, feature, model=None):
        return feature

    def _media_inputs(self, batch, input_ids) -> dict:
        """The pixels of ``batch`` and the token types of ``input_ids`` ({} for text runs)."""
        if not isinstance(self.data_collator, VisionBatchCollator):
            return {}
        return self.data_collator.model_inputs(batch, input_ids)

    def concatenated_forward(self, model, batch):
        if not isinstance(self.data_collator, VisionBatchCollator):
            return super().concatenated_forward(model, batch)

        def forward(input_ids, **kwargs):
            return model(input_ids, **self._media_inputs(batch, input_ids), **kwargs)

        return super().concatenated_forward(forward, batch)


def legacy_pair_collator(pad_token_id: int):
    """The collator ORPO and CPO use by default (for wrapping in a ``VisionBatchCollator``)."""
    return DPODataCollatorWithPadding(pad_token_id=pad_token_id)


class PretokenizedORPOTrainer(_LegacyPairs, ORPOTrainer):
    pass


class PretokenizedCPOTrainer(_LegacyPairs, CPOTrainer):
    pass


class _ChunkedPairLogps:
    """TRL's ORPO/CPO ``concatenated_forward`` (trl 1.16) with log-probabilities and the NLL term from
    ``causal_token_logprobs``: the same values, never the [2 x batch, sequence, vocabulary] logits.

    TRL returns the chosen and rejected logits only for the ``logits/chosen``/``logits/rejected``
    metrics (their ``.mean()``); this returns those means, computed without the logits, as 0-d tensors.
    The subclasses say where TRL's two trainers differ.
    """

    def _pad_value(self) -> int:
        raise NotImplementedError

    def _nll(self, hidden, head, batch, softcap):
        """The NLL term on the chosen rows (the first half of ``hidden``)."""
        raise NotImplementedError

    _average_logps: bool
    _metric_positions: slice  # TRL's ORPO drops the last position of its logits for the metric, CPO does not

    def concatenated_forward(self, model, batch):
        pairs = self.concatenated_inputs(
            batch, is_encoder_decoder=False, padding_value=self._pad_value(), device=self.accelerator.device
        )
        model_kwargs = {"output_router_logits": True} if self.aux_loss_enabled else {}
        model_kwargs.update(self._media_inputs(batch, pairs["concatenated_input_ids"]))  # as _LegacyPairs passes them
        batch = pairs
        hidden, outputs, head, softcap = final_hidden_states(
            model,
            input_ids=batch["concatenated_input_ids"],
            attention_mask=batch["concatenated_attention_mask"],
            use_cache=False,
            **model_kwargs,
        )
        labels = batch["concatenated_labels"]
        per_token = causal_token_logprobs(hidden, head, labels, softcap=softcap)
        logps = per_token.sum(-1)
        if self._average_logps:
            logps = logps / (labels[:, 1:] != IGNORE_INDEX).sum(-1)
        n = len(labels) // 2  # the batch is [chosen, rejected]
        metric_hidden = hidden[:, self._metric_positions]
        result = (
            logps[:n],
            logps[n:],
            mean_logit(metric_hidden[:n], head, softcap),
            mean_logit(metric_hidden[n:], head, softcap),
            self._nll(hidden, head, batch, softcap),
        )
        return (*result, outputs.aux_loss) if self.aux_loss_enabled else result


class ChunkedORPOTrainer(_ChunkedPairLogps, PretokenizedORPOTrainer):
    _average_logps = True
    _metric_positions = slice(None, -1)

    def _pad_value(self):
        return self.padding_value

    def _nll(self, hidden, head, batch, softcap):
        # ORPO's NLL covers the whole chosen sequence, prompt included (every attended token).
        ids, mask = batch["concatenated_input_ids"], batch["concatenated_attention_mask"]
        n = len(ids) // 2
        labels = ids[:n].masked_fill(mask[:n] == 0, IGNORE_INDEX)
        return chunked_causal_lm_loss(hidden[:n], head, labels, softcap=softcap)


class ChunkedCPOTrainer(_ChunkedPairLogps, PretokenizedCPOTrainer):
    _metric_positions = slice(None)

    @property
    def _average_logps(self):
        return self.loss_type in ("ipo", "simpo")

    def _pad_value(self):
        return self.pad_token_id

    def _nll(self, hidden, head, batch, softcap):
        if self.cpo_alpha == 0:
            return torch.tensor(0.0, device=self.accelerator.device)
        labels = batch["concatenated_labels"]
        n = len(labels) // 2
        return chunked_causal_lm_loss(hidden[:n], head, labels[:n], softcap=softcap)


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
