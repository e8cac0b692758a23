"""The stream entry codec: the fast flat decoder agrees with the general one, and any garbage
decodes or raises WireError, never anything else (STYLE.md rule 11)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.config import Backoff, FollowerConfig, SyncConfig, SyncConfigError
from sync.wire import LogEntry, WireError, decode_entry, decode_flat


def flat(fields: dict[bytes, bytes]) -> list[bytes]:
    return [x for kv in fields.items() for x in kv]


GOOD = {b"op": b"add", b"n": b"+447700900123", b"ref": b"case-9", b"ts": b"1796325869.5"}


def test_fast_and_general_paths_agree() -> None:
    with_sum = {**GOOD, b"sum": b"ab" * 16}
    for fields in (GOOD, with_sum, {b"ts": b"1", b"n": b"+447700900123", b"op": b"remove"}):
        assert decode_flat(b"42-0", flat(fields)) == decode_entry(b"42-0", fields)
    assert decode_flat(b"42-0", flat(with_sum)) == LogEntry(
        42, "add", 447700900123, "case-9", 1796325869.5, "ab" * 16
    )
    reset = {b"op": b"reset", b"n": b"", b"ref": b"", b"ts": b"5", b"sum": b"cd" * 16}
    assert decode_flat(b"7-0", flat(reset)).op == "reset"


@pytest.mark.parametrize(
    ("entry_id", "change"),
    [
        (b"42-1", {}),  # not a <version>-0 ID
        (b"x-0", {}),
        (b"42-0", {b"op": b"bar"}),
        (b"42-0", {b"n": b"447700900123"}),  # no '+'
        (b"42-0", {b"n": b"+047700900123"}),  # country code cannot start with 0
        (b"42-0", {b"n": b"+44770"}),  # too short
        (b"42-0", {b"n": b"+4477009001234567"}),  # too long
        (b"42-0", {b"ts": b"nan"}),
        (b"42-0", {b"ts": b"soon"}),
        (b"42-0", {b"ref": b"\xff"}),
    ],
)
def test_bad_entries_are_wire_errors(entry_id: bytes, change: dict[bytes, bytes]) -> None:
    fields = {**GOOD, **change}
    with pytest.raises(WireError):
        decode_flat(entry_id, flat(fields))
    with pytest.raises(WireError):
        decode_entry(entry_id, fields)


@settings(max_examples=300, deadline=None)
@given(
    entry_id=st.binary(max_size=12),
    values=st.lists(st.binary(max_size=20), min_size=0, max_size=5),
    keys=st.lists(st.sampled_from([b"op", b"n", b"ref", b"ts", b"sum", b"x"]), max_size=5),
)
def test_garbage_decodes_or_raises_wire_error(
    entry_id: bytes, values: list[bytes], keys: list[bytes]
) -> None:
    pairs: list[Any] = [x for kv in zip(keys, values, strict=False) for x in kv]
    try:
        entry = decode_flat(entry_id, pairs)
    except WireError:
        return
    assert entry.version >= 0 and entry.op in ("add", "remove", "reset")


def test_config_from_section_refuses_unknown_and_wrong_types() -> None:
    assert SyncConfig.from_section({"key_prefix": "x"}).key_prefix == "x"
    cfg = FollowerConfig.from_section({"key_prefix": "y", "block_s": 2, "retain_versions": 5})
    assert cfg.sync.key_prefix == "y" and cfg.block_s == 2 and cfg.sync.retain_versions == 5
    with pytest.raises(SyncConfigError, match="unknown setting 'colour'"):
        SyncConfig.from_section({"colour": "red"})
    with pytest.raises(SyncConfigError, match="block_s"):
        FollowerConfig.from_section({"block_s": "fast"})
    with pytest.raises(SyncConfigError, match="key_prefix"):
        SyncConfig(key_prefix="a{b}")


def test_backoff_is_capped_and_jittered() -> None:
    b = Backoff(initial_s=0.1, cap_s=1.0)
    delays = [b.delay_s(n) for n in range(30)]
    assert all(0.0 <= d <= 1.0 for d in delays)
    assert len(set(delays)) > 20  # jittered
    assert Backoff(0.1, 1.0, jitter=False).delay_s(10) == 1.0
    assert Backoff.none().delay_s(5) == 0.0
