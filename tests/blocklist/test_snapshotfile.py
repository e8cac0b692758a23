"""The snapshot file: round trips, atomic writes, and every kind of damage refused whole with an
error that names the file (a partly loaded list never exists)."""

from __future__ import annotations

import hashlib
import os
import random
import struct
from pathlib import Path

import pytest

from blocklist import (
    ListSnapshot,
    SnapshotError,
    SnapshotFileError,
    read_snapshot,
    read_snapshot_bytes,
    snapshot_to_bytes,
    snapshotfile,
    write_snapshot,
)
from blocklist.snapshotfile import FORMAT_VERSION, MAGIC, read_refs

HEADER = struct.Struct("<8sHHQQ16sQQ")
TRAILER = 16
REFS = {"+447700900001": "case-1", "+442079460002": "case-2"}


def small() -> ListSnapshot:
    return ListSnapshot.from_e164(["+447700900001", "+442079460002", "+441632960003"], 7)


def large() -> ListSnapshot:
    # array, run and bitset containers all appear: a dense run, a dense block, sparse numbers.
    rng = random.Random(7)
    numbers = set(range(447700900000, 447700901000))
    numbers |= {442079460000 + i for i in range(0, 10000, 2)}
    numbers |= {441632960000 + rng.randrange(1000) for _ in range(300)}
    return ListSnapshot.from_numbers(numbers, 99)


def resign(data: bytes) -> bytes:
    """Recompute the trailer so a test reaches the checks behind it."""
    body = data[:-TRAILER]
    return body + hashlib.blake2b(body, digest_size=TRAILER).digest()


def patch_header(data: bytes, **fields: object) -> bytes:
    names = ("magic", "fmt", "flags", "version", "count", "checksum", "plen", "rlen")
    values = dict(zip(names, HEADER.unpack_from(data), strict=True))
    values.update(fields)
    return HEADER.pack(*(values[n] for n in names)) + data[HEADER.size :]


@pytest.mark.parametrize("make", [small, large, ListSnapshot.empty])
def test_round_trip(tmp_path: Path, make: object) -> None:
    snap = make()  # type: ignore[operator]
    path = tmp_path / "list.snap"
    write_snapshot(path, snap)
    back = read_snapshot(path)
    assert sorted(back) == sorted(snap)
    assert (back.version, back.checksum, len(back)) == (snap.version, snap.checksum, len(snap))
    assert read_refs(path) == {}
    assert read_snapshot_bytes(snapshot_to_bytes(snap)).checksum == snap.checksum


def test_refs_round_trip_and_are_never_needed_for_lookup(tmp_path: Path) -> None:
    path = tmp_path / "list.snap"
    write_snapshot(path, small(), REFS)
    assert read_refs(path) == REFS
    assert sorted(read_snapshot(path)) == sorted(small())


def test_refs_must_name_entries(tmp_path: Path) -> None:
    for refs in ({"+447700900999": "x"}, {"447700900001": "x"}):
        with pytest.raises(SnapshotError):
            write_snapshot(tmp_path / "list.snap", small(), refs)
    assert not list(tmp_path.iterdir())


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "list.snap"
    write_snapshot(path, small())
    write_snapshot(path, large())  # replaces in one rename
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.snap"]
    assert len(read_snapshot(path)) == len(large())


def test_failed_write_leaves_target_untouched_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "list.snap"
    write_snapshot(path, small())
    before = path.read_bytes()

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(SnapshotFileError, match=f"{path}: cannot write: No space left"):
        write_snapshot(path, large())
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.snap"]


def test_write_into_a_missing_directory_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "list.snap"
    with pytest.raises(SnapshotFileError, match=f"{path}: cannot write"):
        write_snapshot(path, small())


def expect_refused(tmp_path: Path, data: bytes, match: str) -> None:
    path = tmp_path / "damaged.snap"
    path.write_bytes(data)
    with pytest.raises(SnapshotFileError, match=match) as err:
        read_snapshot(path)
    assert str(err.value).startswith(f"{path}: ")


@pytest.mark.parametrize("make", [small, large])
def test_truncated_at_every_offset_is_refused(tmp_path: Path, make: object) -> None:
    data = snapshot_to_bytes(make(), REFS if make is small else None)  # type: ignore[operator]
    step = 1 if len(data) < 1000 else 97
    for cut in [*range(0, len(data), step), len(data) - 1]:
        with pytest.raises(SnapshotFileError, match=r"truncated|bad magic") as err:
            read_snapshot_bytes(data[:cut], "where.snap")
        assert str(err.value).startswith("where.snap: ")


def test_every_bit_flip_anywhere_is_refused() -> None:
    data = snapshot_to_bytes(small(), REFS)
    for i in range(len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[i] ^= 1 << bit
            with pytest.raises(SnapshotFileError) as err:
                read_snapshot_bytes(bytes(damaged), "x.snap")
            assert str(err.value).startswith("x.snap: ")


def test_bit_flips_in_every_region_of_a_large_file_are_refused() -> None:
    data = snapshot_to_bytes(large())
    rng = random.Random(3)
    regions = {
        "header": (0, HEADER.size),
        "payload": (HEADER.size, len(data) - TRAILER),
        "trailer": (len(data) - TRAILER, len(data)),
    }
    for start, end in regions.values():
        for _ in range(40):
            damaged = bytearray(data)
            damaged[rng.randrange(start, end)] ^= 1 << rng.randrange(8)
            with pytest.raises(SnapshotFileError):
                read_snapshot_bytes(bytes(damaged), "x.snap")


def test_padded_file_is_refused(tmp_path: Path) -> None:
    expect_refused(tmp_path, snapshot_to_bytes(small()) + b"\0", "truncated or padded")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "bad magic|truncated"),
        (b"number,ref\n07700900001,x\n" * 10, "bad magic"),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "bad magic"),
        (b"UPCSLST", "truncated"),
        (b"upcslst\x1a" + bytes(100), "bad magic"),
    ],
)
def test_foreign_files_are_refused(tmp_path: Path, content: bytes, match: str) -> None:
    expect_refused(tmp_path, content, match)


def test_wrong_magic_is_refused(tmp_path: Path) -> None:
    data = patch_header(snapshot_to_bytes(small()), magic=b"UPCSLST\x00")
    expect_refused(tmp_path, resign(data), "bad magic")


def test_wrong_format_version_is_refused(tmp_path: Path) -> None:
    for fmt in (0, FORMAT_VERSION + 1, 0xFFFF):
        data = resign(patch_header(snapshot_to_bytes(small()), fmt=fmt))
        expect_refused(tmp_path, data, f"format {fmt}, this upcs reads format {FORMAT_VERSION}")


def test_unknown_flags_are_refused(tmp_path: Path) -> None:
    for flags in (1, 0x8000):
        data = resign(patch_header(snapshot_to_bytes(small()), flags=flags))
        expect_refused(tmp_path, data, "unknown flags")


def test_header_and_payload_count_mismatch_is_refused(tmp_path: Path) -> None:
    for count in (2, 4, 0, 2**64 - 1):
        data = resign(patch_header(snapshot_to_bytes(small()), count=count))
        expect_refused(tmp_path, data, f"header says {count} entries, payload has 3")


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    data = resign(patch_header(snapshot_to_bytes(small()), checksum=bytes(16)))
    expect_refused(tmp_path, data, "list checksum mismatch")


def test_payload_that_does_not_decode_is_refused(tmp_path: Path) -> None:
    data = snapshot_to_bytes(small())
    plen = HEADER.unpack_from(data)[6]
    garbage = data[: HEADER.size] + b"\xff" * plen + data[HEADER.size + plen :]
    expect_refused(tmp_path, resign(garbage), r"does not decode|checksum|entries")


def test_length_fields_that_disagree_with_the_file_are_refused(tmp_path: Path) -> None:
    data = snapshot_to_bytes(small(), REFS)
    plen, rlen = HEADER.unpack_from(data)[6:8]
    for fields in ({"plen": plen + 1}, {"rlen": rlen - 1}, {"plen": 2**63}, {"rlen": 2**64 - 1}):
        expect_refused(tmp_path, resign(patch_header(data, **fields)), "truncated or padded")


def test_refs_section_damage_is_refused(tmp_path: Path) -> None:
    data = snapshot_to_bytes(small(), REFS)
    plen = HEADER.unpack_from(data)[6]
    start = HEADER.size + plen
    path = tmp_path / "refs.snap"
    for blob, match in [
        (b"[1, 2]", "not a JSON object"),
        (b"{nope", "not JSON"),
        (b'{"+447700900001": 5}', "not a string"),
        (b'{"07700900001": "x"}', "non-E.164"),
    ]:
        body = patch_header(data, rlen=len(blob))[:start] + blob
        path.write_bytes(resign(body + bytes(TRAILER)))
        with pytest.raises(SnapshotFileError, match=match):
            read_refs(path)


def test_directory_and_missing_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SnapshotFileError, match=f"{tmp_path}: is a directory"):
        read_snapshot(tmp_path)
    missing = tmp_path / "missing.snap"
    with pytest.raises(SnapshotFileError, match=f"{missing}: no such file"):
        read_snapshot(missing)


def test_unreadable_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulated, because tests may run as root, who can read a mode-000 file.
    path = tmp_path / "secret.snap"
    write_snapshot(path, small())

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(snapshotfile, "open", denied, raising=False)
    with pytest.raises(SnapshotFileError, match=f"{path}: permission denied"):
        read_snapshot(path)

    def io_error(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(snapshotfile, "open", io_error, raising=False)
    with pytest.raises(SnapshotFileError, match=f"{path}: cannot read: Input/output error"):
        read_snapshot(path)


def test_magic_constant_is_what_the_docs_say() -> None:
    assert MAGIC == b"UPCSLST\x1a"
    assert HEADER.size == 60
