"""Tokenisation and loss masks.

Each conversation is rendered to one string and tokenised as a whole with
character offsets, so training tokens are exactly the tokens the model sees at
inference (piecewise tokenisation changes tokens at the seams). A token is
trained when its characters overlap an assistant response; which responses count
depends on ``train_on_prompt`` and ``mask_history``.

Batches go through the fast tokenizer in one call (Rust, parallel) and the label
arithmetic is vectorised with numpy.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ffc.runtime.chat.templates import ChatTemplate, ConversationError, Rendered

IGNORE_INDEX = -100


@dataclass
class MaskOptions:
    cutoff_len: int
    train_on_prompt: bool = False
    mask_history: bool = False
    default_system: Optional[str] = None
    enable_thinking: bool = True


@dataclass
class Stats:
    """What tokenisation did to a dataset: kept, truncated and dropped samples (by reason), tokens."""

    samples: int = 0
    kept: int = 0
    truncated: int = 0
    dropped: Counter = field(default_factory=Counter)
    tokens: int = 0
    trained_tokens: int = 0

    @classmethod
    def from_columns(cls, drop: list[str], truncated: list[bool], lengths: list[int], trained: list[int]) -> "Stats":
        dropped = Counter(reason for reason in drop if reason)
        return cls(
            samples=len(drop),
            kept=len(drop) - sum(dropped.values()),
            truncated=sum(truncated),
            dropped=dropped,
            tokens=sum(lengths),
            trained_tokens=sum(trained),
        )

    def summary(self) -> str:
        lines = [
            f"samples: {self.samples}, kept: {self.kept}, truncated: {self.truncated}, "
            f"dropped: {sum(self.dropped.values())}; tokens: {self.tokens}, trained tokens: {self.trained_tokens}"
        ]
        lines += [f"  dropped ({count}): {reason}" for reason, count in sorted(self.dropped.items())]
        return "\n".join(lines)


def _special(tokenizer, name: str) -> str:
    value = getattr(tokenizer, name, None)
    return value if isinstance(value, str) else ""


def _token_segments(offsets: np.ndarray, rendered: Rendered):
    """For each token: index of the segment holding its first and last character."""
    bounds = np.cumsum([0] + [len(s.text) for s in rendered.segments])
    starts = np.searchsorted(bounds, offsets[:, 0], side="right") - 1
    ends = np.searchsorted(bounds, np.maximum(offsets[:, 1] - 1, offsets[:, 0]), side="right") - 1
    last = len(rendered.segments) - 1
    return np.clip(starts, 0, last), np.clip(ends, 0, last)


def label_conversation(ids: np.ndarray, offsets: np.ndarray, rendered: Rendered, opts: MaskOptions):
    """Labels and per-token turn index for one tokenised conversation."""
    segments = rendered.segments
    kinds = np.array([s.kind == "response" for s in segments])
    turns = np.array([s.turn for s in segments])
    first, last = _token_segments(offsets, rendered)
    is_response = kinds[first] | kinds[last]  # a token that reaches into a response is part of it
    token_turn = turns[first]
    if opts.train_on_prompt:
        trained = np.ones_like(is_response)
    elif opts.mask_history:
        trained = is_response & (token_turn == rendered.num_turns - 1)
    else:
        trained = is_response
    labels = np.where(trained, ids, IGNORE_INDEX)
    return labels, token_turn, is_response


class ConversationEncoder:
    """Renders conversations with a chat template and tokenises them into input_ids/labels."""

    def __init__(self, tokenizer, template: ChatTemplate, opts: MaskOptions):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("ffc needs a fast (Rust) tokenizer for offset-based masking; this model has a slow one")
        self.tokenizer = tokenizer
        self.template = template
        self.opts = opts
        self.bos = _special(tokenizer, "bos_token")
        self.eos = _special(tokenizer, "eos_token")
        self.bos_id = tokenizer.bos_token_id if template.add_bos_token else None

    def render(self, messages, system, tools) -> Rendered:
        return self.template.render(
            messages,
            bos=self.bos,
            eos=self.eos,
            system=system or self.opts.default_system,
            tools=tools or None,
            enable_thinking=self.opts.enable_thinking,
        )

    def encode_batch(self, batch: dict) -> dict:
        """``datasets.map(batched=True)`` function. Every input row yields one output row;
        rows that cannot be used keep empty ids and the reason in ``_drop`` (see ``Stats``)."""
        out = _empty_columns()
        rows = list(zip(batch["messages"], batch["system"], batch["tools"]))
        rendered: list = []
        for messages, system, tools in rows:
            try:
                rendered.append(self.render(messages, system, tools))
            except ConversationError as exc:
                rendered.append(f"cannot render: {exc}")
        texts = [r.text if isinstance(r, Rendered) else "" for r in rendered]
        enc = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        for r, ids, offsets, row in zip(rendered, enc["input_ids"], enc["offset_mapping"], rows):
            if isinstance(r, str):
                _add_row(out, drop=r)
                continue
            ids = np.asarray(ids, dtype=np.int64)
            offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
            result = self._encode_one(r, ids, offsets, *row)
            if isinstance(result, str):
                _add_row(out, drop=result)
            else:
                _add_row(out, *result)
        return out

    def _with_bos(self, ids, labels):
        if self.bos_id is not None and (len(ids) == 0 or ids[0] != self.bos_id):
            ids = np.concatenate([[self.bos_id], ids])
            labels = np.concatenate([[IGNORE_INDEX], labels])
        return ids, labels

    def _encode_one(self, rendered: Rendered, ids, offsets, messages, system, tools):
        labels, token_turn, is_response = label_conversation(ids, offsets, rendered, self.opts)
        ids, labels = self._with_bos(ids, labels)
        if len(token_turn) < len(ids):  # a BOS was prepended
            token_turn = np.concatenate([[0], token_turn])
            is_response = np.concatenate([[False], is_response])
        truncated = False
        if len(ids) > self.opts.cutoff_len:
            truncated = True
            ids, labels = self._truncate(rendered, ids, labels, token_turn, is_response, messages, system, tools)
        if not (labels != IGNORE_INDEX).any():
            return "no trained tokens left after truncation" if truncated else "no trained tokens"
        return ids, labels, truncated

    def _truncate(self, rendered, ids, labels, token_turn, is_response, messages, system, tools):
        """Make a too-long sample fit ``cutoff_len`` and keep it useful.

        - Several turns: keep whole turns. Normally the first ones; with mask_history
          (only the last turn is trained) the last turn with as much recent history as fits.
        - One turn that alone is too long: shorten the prompt's user text and the
          response so both keep a fair share (the response at least half).
        """
        cutoff = self.opts.cutoff_len
        if rendered.num_turns > 1 and not self.opts.mask_history:
            # A turn ends with the last token of its response (its end-of-turn marker).
            ends = [int(np.flatnonzero(is_response & (token_turn == t)).max()) + 1 for t in range(rendered.num_turns)]
            fitting = [end for end in ends if end <= cutoff]
            if fitting:
                return ids[: fitting[-1]], labels[: fitting[-1]]
        if rendered.num_turns > 1 and self.opts.mask_history:
            for start in range(2, len(messages), 2):  # drop the oldest turns first
                ids, labels = self._encode_text(self.render(messages[start:], system, tools))
                if len(ids) <= cutoff:
                    return ids, labels
        return self._truncate_single_turn(ids, labels, cutoff)

    def _encode_text(self, rendered: Rendered):
        enc = self.tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        labels, _, _ = label_conversation(ids, offsets, rendered, self.opts)
        return self._with_bos(ids, labels)

    @staticmethod
    def _truncate_single_turn(ids, labels, cutoff):
        trained = np.flatnonzero(labels != IGNORE_INDEX)
        if len(trained) == 0 or len(trained) == len(ids):
            return ids[:cutoff], labels[:cutoff]
        start = int(trained[0])  # the first response token
        prompt_len, response_len = start, len(ids) - start
        response_budget = min(response_len, max(cutoff // 2, cutoff - prompt_len))
        prompt_budget = cutoff - response_budget
        # Keep the template's tail of the prompt (e.g. "<|im_start|>assistant\n"): cut the user text before it.
        tail = min(8, prompt_budget // 2, prompt_len)
        keep_prompt = np.r_[0 : prompt_budget - tail, prompt_len - tail : prompt_len]
        keep = np.r_[keep_prompt, start : start + response_budget]
        return ids[keep], labels[keep]


class TextEncoder:
    """Pre-training: each text becomes EOS-terminated token chunks of at most ``cutoff_len``."""

    def __init__(self, tokenizer, cutoff_len: int):
        self.tokenizer = tokenizer
        self.cutoff_len = cutoff_len
        self.bos_id = tokenizer.bos_token_id
        self.eos_id = tokenizer.eos_token_id

    def encode_batch(self, batch: dict) -> dict:
        out = _empty_columns()
        enc = self.tokenizer(batch["text"], add_special_tokens=False)
        for ids in enc["input_ids"]:
            ids = ([self.bos_id] if self.bos_id is not None else []) + ids + ([self.eos_id] if self.eos_id is not None else [])
            ids = np.asarray(ids, dtype=np.int64)
            if len(ids) < 2:
                _add_row(out, drop="empty text")
                continue
            # Long documents are split into chunks, not cut: nothing is lost.
            for start in range(0, len(ids), self.cutoff_len):
                chunk = ids[start : start + self.cutoff_len]
                if len(chunk) >= 2:
                    _add_row(out, chunk, chunk.copy(), start > 0)
        return out


def _empty_columns() -> dict:
    return {"input_ids": [], "labels": [], "_drop": [], "_truncated": [], "_trained": []}


def _add_row(out: dict, ids=None, labels=None, truncated=False, drop: str = "") -> None:
    out["input_ids"].append([] if ids is None else ids.tolist())
    out["labels"].append([] if labels is None else labels.tolist())
    out["_drop"].append(drop)
    out["_truncated"].append(bool(truncated))
    out["_trained"].append(0 if labels is None else int((labels != IGNORE_INDEX).sum()))
