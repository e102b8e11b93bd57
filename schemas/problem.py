"""A problem found in a spec: the key to point at and what to do instead."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    path: tuple  # keys from the spec root, e.g. ("model", "quantization_bit")
    message: str
