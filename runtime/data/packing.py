"""Packing several samples into one row without cross-contamination, and the batch collator.

A packed row carries ``position_ids`` that restart at 0 for every sample and no
attention mask. transformers reads the restarts as sequence boundaries: its
SDPA/eager mask becomes block-diagonal and FlashAttention runs variable-length
kernels (``masking_utils.find_packed_sequence_indices``), so a token never attends
to another sample. This needs ``use_cache=False`` (train.py sets it): with a KV
cache transformers skips the packed-row detection. The first label of each sample is ignored, so no sample is
trained to predict the start of the next.
"""

from __future__ import annotations

import bisect
from typing import Iterable

from .tokenize import IGNORE_INDEX


def pack_bins(lengths: list[int], capacity: int) -> list[list[int]]:
    """Best-fit-decreasing: sample indices grouped into bins of at most ``capacity`` tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    free: list[tuple[int, int]] = []  # (remaining capacity, bin index), sorted
    bins: list[list[int]] = []
    for index in order:
        need = lengths[index]
        slot = bisect.bisect_left(free, (need, -1))
        if slot < len(free):
            remaining, bin_id = free.pop(slot)
        else:
            remaining, bin_id = capacity, len(bins)
            bins.append([])
        bins[bin_id].append(index)
        if remaining - need > 0:
            bisect.insort(free, (remaining - need, bin_id))
    for members in bins:  # keep the data order inside a row
        members.sort()
    return bins


def pack_examples(batch: dict, capacity: int) -> dict:
    """``datasets.map(batched=True)`` function: rows of samples -> packed rows with position_ids."""
    ids, labels = batch["input_ids"], batch["labels"]
    out = {"input_ids": [], "labels": [], "position_ids": []}
    for members in pack_bins([len(x) for x in ids], capacity):
        row_ids, row_labels, positions = [], [], []
        for index in members:
            row_ids += ids[index]
            row_labels += [IGNORE_INDEX] + list(labels[index][1:])
            positions += range(len(ids[index]))
        out["input_ids"].append(row_ids)
        out["labels"].append(row_labels)
        out["position_ids"].append(positions)
    return out


def pad_batch(sequences, pad_id: int, left: bool = False, device=None):
    """(ids, attention mask) tensors of ``sequences`` padded to the longest; left padding for generation."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for i, seq in enumerate(sequences):
        span = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[i, span] = torch.as_tensor(seq, dtype=torch.long, device=device)
        mask[i, span] = 1
    return ids, mask


class Collator:
    """Pads a batch on the right. Packed rows are padded with a sample of their own
    (fresh position ids, ignored labels) so that no attention mask is needed."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Iterable[dict]) -> dict:
        import torch

        features = list(features)
        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        packed = "position_ids" in features[0]
        batch = {"input_ids": [], "labels": [], ("position_ids" if packed else "attention_mask"): []}
        for f in features:
            n, pad = len(f["input_ids"]), longest - len(f["input_ids"])
            batch["input_ids"].append(list(f["input_ids"]) + [self.pad_token_id] * pad)
            batch["labels"].append(list(f["labels"]) + [IGNORE_INDEX] * pad)
            if packed:
                batch["position_ids"].append(list(f["position_ids"]) + list(range(pad)))
            else:
                batch["attention_mask"].append([1] * n + [0] * pad)
        return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}
