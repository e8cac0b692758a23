"""Structured logs: the event name first, then `key=value` pairs (STYLE.md rule 9).

A victim's number never appears in clear (safety invariant 4): `NumberTagger` turns one into a
short keyed hash, stable for the life of the key, so an operator can see that two log lines
concern the same dial without learning the number.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Any

__all__ = ["TAG_HEX_CHARS", "NumberTagger", "format_event", "log_event"]

# 8 hex chars = 32 bits: enough to tell a handful of numbers apart in one log, far too few to
# reverse by enumeration once keyed (the key never leaves the process unless configured).
TAG_HEX_CHARS = 8
_KEY_BYTES = 16  # blake2b keys are up to 64 bytes; 128 bits is ample for a MAC
_SAFE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:/@+-[]")


def _quote(value: object) -> str:
    text = str(value)
    if text and all(ch in _SAFE_CHARS for ch in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def format_event(event: str, **fields: Any) -> str:
    """`event key=value key="quoted value"`; None values are left out."""
    parts = [event]
    parts.extend(f"{k}={_quote(v)}" for k, v in fields.items() if v is not None)
    return " ".join(parts)


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, format_event(event, **fields))


class NumberTagger:
    """Keyed short hash of a dial string or number, for logs only."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key else secrets.token_bytes(_KEY_BYTES)

    def tag(self, number: str) -> str:
        digest = hashlib.blake2b(number.encode("utf-8", "replace"), key=self._key, digest_size=8)
        return digest.hexdigest()[:TAG_HEX_CHARS]
