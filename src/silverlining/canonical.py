"""Canonical JSON: the one byte serialisation that hashes and signatures cover, shared by
Core's signed reports and a node's signed usage records (so a verifier in any language
reproduces the same bytes).

Sorted keys, ``,``/``:`` separators, UTF-8 without escaping. Floats are refused: their text
form is where JSON encoders disagree.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    _refuse_floats(value)
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _refuse_floats(value: Any) -> None:
    if isinstance(value, float):
        raise ValueError("canonical JSON carries no floats")
    if isinstance(value, dict):
        for item in value.values():
            _refuse_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_floats(item)
