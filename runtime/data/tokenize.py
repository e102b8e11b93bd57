"""Tokenisation and loss masks.

Each conversation is rendered to one string and tokenised as a whole with
character offsets, so training tokens are exactly the tokens the model sees at
inference (piecewise tokenisation changes tokens at the seams). A token is
trained when its characters overlap an assistant response; which responses count
depends on ``train_on_prompt`` and ``mask_history``.

Batches go through the Rust tokenizer in one call (parallel); the encodings map the
few segment boundaries to tokens (``char_to_token``), so no per-token offsets are
converted to Python.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

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
    """What tokenisation did to a dataset: kept, truncated and dropped samples (by reason), tokens;
    and the bad rows loading skipped before it (``data.on_bad_row: skip``), by reason."""

    samples: int = 0
    kept: int = 0
    truncated: int = 0
    dropped: Counter = field(default_factory=Counter)
    tokens: int = 0
    trained_tokens: int = 0
    skipped: Counter = field(default_factory=Counter)

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
        if self.skipped:
            lines.append(f"bad rows skipped when loading: {sum(self.skipped.values())}")
            lines += [f"  skipped ({count}): {reason}" for reason, count in sorted(self.skipped.items())]
        return "\n".join(lines)


def _special(tokenizer, name: str) -> str:
    value = getattr(tokenizer, name, None)
    return value if isinstance(value, str) else ""


def prompt_ids(tokenizer, template, messages, *, system=None, tools=None, enable_thinking: bool = True) -> list[int]:
    """Token ids of the generation prompt for ``messages``: what the model sees at inference."""
    text = template.render(
        messages, bos=_special(tokenizer, "bos_token"), eos=_special(tokenizer, "eos_token"), system=system,
        tools=tools, add_generation_prompt=True, enable_thinking=enable_thinking,
    ).text  # fmt: skip
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if getattr(template, "add_bos_token", False) and tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
    return ids


def _token_at(encoding, char: int, step: int, length: int) -> int:
    """The token holding character ``char``; characters no token covers are skipped in ``step`` direction."""
    while 0 <= char < length:
        token = encoding.char_to_token(char)
        if token is not None:
            return token
        char += step
    return len(encoding.ids) if step > 0 else -1


def response_spans(rendered: Rendered, encoding) -> list[tuple[int, int, int]]:
    """(first token, end token, turn) of each response: the tokens that overlap its characters.

    The Rust encoding maps characters to tokens itself, so only the segment boundaries are looked up
    (no per-token offsets cross into Python)."""
    spans, position, length = [], 0, len(rendered.text)
    for segment in rendered.segments:
        end = position + len(segment.text)
        if segment.kind == "response" and segment.text:
            spans.append(
                (_token_at(encoding, position, 1, length), _token_at(encoding, end - 1, -1, length) + 1, segment.turn)
            )
        position = end
    return spans


def label_conversation(ids: list[int], spans, num_turns: int, opts: MaskOptions) -> tuple[list[int], int]:
    """(labels, trained token count): responses are trained (only the last with mask_history), or all."""
    if opts.train_on_prompt:
        return list(ids), len(ids)
    labels, trained = [IGNORE_INDEX] * len(ids), 0
    for first, end, turn in spans:
        if opts.mask_history and turn != num_turns - 1:
            continue
        labels[first:end] = ids[first:end]
        trained += end - first
    return labels, trained


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

    def _encode(self, texts: list[str]):
        # The Rust tokenizer directly: the same tokens as tokenizer(texts, add_special_tokens=False), batched
        # over threads, and the encodings answer char_to_token without converting offsets to Python.
        backend = self.tokenizer.backend_tokenizer
        if backend.truncation is not None or backend.padding is not None:
            return [self.tokenizer._tokenizer.encode(t, add_special_tokens=False) for t in texts]  # pragma: no cover
        return backend.encode_batch(texts, add_special_tokens=False)

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
        encodings = self._encode([r.text if isinstance(r, Rendered) else "" for r in rendered])
        for r, encoding, row in zip(rendered, encodings, rows):
            if isinstance(r, str):
                _add_row(out, drop=r)
                continue
            result = self._encode_one(r, encoding, *row)
            if isinstance(result, str):
                _add_row(out, drop=result)
            else:
                _add_row(out, *result)
        return out

    def _labelled(self, rendered: Rendered, encoding):
        """(ids, labels, trained count, response spans), with a BOS in front when the template wants one."""
        ids = encoding.ids
        spans = response_spans(rendered, encoding)
        labels, trained = label_conversation(ids, spans, rendered.num_turns, self.opts)
        if self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids, labels = [self.bos_id] + ids, [IGNORE_INDEX] + labels
            spans = [(a + 1, b + 1, t) for a, b, t in spans]
        return ids, labels, trained, spans

    def _encode_one(self, rendered: Rendered, encoding, messages, system, tools):
        ids, labels, trained, spans = self._labelled(rendered, encoding)
        truncated = len(ids) > self.opts.cutoff_len
        if truncated:
            ids, labels = self._truncate(rendered, ids, labels, spans, messages, system, tools)
            trained = sum(1 for label in labels if label != IGNORE_INDEX)
        if not trained:
            return "no trained tokens left after truncation" if truncated else "no trained tokens"
        return ids, labels, truncated, trained

    def _truncate(self, rendered, ids, labels, spans, messages, system, tools):
        """Make a too-long sample fit ``cutoff_len`` and keep it useful.

        - Several turns: keep whole turns. Normally the first ones; with mask_history
          (only the last turn is trained) the last turn with as much recent history as fits.
        - One turn that alone is too long: shorten the prompt's user text and the
          response so both keep a fair share (the response at least half).
        """
        cutoff = self.opts.cutoff_len
        if rendered.num_turns > 1 and not self.opts.mask_history:
            # A turn ends with the last token of its response (its end-of-turn marker).
            ends = sorted({max(b for a, b, t in spans if t == turn) for turn in {t for _, _, t in spans}})
            fitting = [end for end in ends if end <= cutoff]
            if fitting:
                return ids[: fitting[-1]], labels[: fitting[-1]]
        if rendered.num_turns > 1 and self.opts.mask_history:
            for start in range(2, len(messages), 2):  # drop the oldest turns first
                shorter = self.render(messages[start:], system, tools)
                ids, labels, _, _ = self._labelled(shorter, self._encode([shorter.text])[0])
                if len(ids) <= cutoff:
                    return ids, labels
        return self._truncate_single_turn(ids, labels, cutoff)

    @staticmethod
    def _truncate_single_turn(ids, labels, cutoff):
        trained = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
        if not trained or len(trained) == len(ids):
            return ids[:cutoff], labels[:cutoff]
        start = trained[0]  # the first response token
        prompt_len, response_len = start, len(ids) - start
        response_budget = min(response_len, max(cutoff // 2, cutoff - prompt_len))
        prompt_budget = cutoff - response_budget
        # Keep the template's tail of the prompt (e.g. "<|im_start|>assistant\n"): cut the user text before it.
        tail = min(8, prompt_budget // 2, prompt_len)
        head = prompt_budget - tail
        keep = lambda seq: seq[:head] + seq[prompt_len - tail : prompt_len] + seq[start : start + response_budget]  # noqa: E731
        return keep(ids), keep(labels)


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
            ids = (
                ([self.bos_id] if self.bos_id is not None else [])
                + ids
                + ([self.eos_id] if self.eos_id is not None else [])
            )
            if len(ids) < 2:
                _add_row(out, drop="empty text")
                continue
            # Long documents are split into chunks, not cut: nothing is lost.
            for start in range(0, len(ids), self.cutoff_len):
                chunk = ids[start : start + self.cutoff_len]
                if len(chunk) >= 2:
                    _add_row(out, chunk, list(chunk), start > 0, len(chunk))
        return out


def _empty_columns() -> dict:
    return {"input_ids": [], "labels": [], "_drop": [], "_truncated": [], "_trained": []}


def _add_row(out: dict, ids=None, labels=None, truncated=False, trained: int = 0, drop: str = "") -> None:
    out["input_ids"].append(ids or [])
    out["labels"].append(labels or [])
    out["_drop"].append(drop)
    out["_truncated"].append(bool(truncated))
    out["_trained"].append(trained)
