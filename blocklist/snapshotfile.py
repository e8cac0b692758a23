"""The snapshot file: one list version on disk, written atomically, refused whole if damaged.

Layout (all integers little-endian):

    magic            8 bytes   b"UPCSLST\\x1a" (the ^Z stops `type`/`cat` from dumping binary)
    format_version   u16       FORMAT_VERSION
    flags            u16       0 (reserved; a reader refuses bits it does not know)
    list_version     u64
    entry_count      u64
    checksum         16 bytes  blake2b-128 of the sorted entries (ListSnapshot.checksum)
    payload_length   u64       roaring 64-bit portable serialisation of the entries
    refs_length      u64       UTF-8 JSON object {"+E164": "ref"} for entries with a reference
    payload, refs
    trailer          16 bytes  blake2b-128 of everything before it (truncation and bit rot)

A partly loaded list never exists: the whole file is read and verified before a snapshot is built.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import cast

from pyroaring import FrozenBitMap64

from blocklist.snapshot import ListSnapshot, SnapshotError, e164_to_int

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_SNAPSHOT_BYTES",
    "SnapshotFileError",
    "read_refs",
    "read_snapshot",
    "read_snapshot_bytes",
    "snapshot_to_bytes",
    "write_snapshot",
]

MAGIC = b"UPCSLST\x1a"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sHHQQ16sQQ")
_TRAILER_BYTES = 16
# 100 million entries at ~2 bytes each in roaring is ~200 MB; a file over 1 GiB is not ours.
MAX_SNAPSHOT_BYTES = 1 << 30


class SnapshotFileError(ValueError):
    """The file is not a complete, intact upcs snapshot; the message names the file and fault."""


def snapshot_to_bytes(snapshot: ListSnapshot, refs: Mapping[str, str] | None = None) -> bytes:
    payload = snapshot.bitmap.serialize()
    refs_blob = b""
    if refs:
        for e164, ref in refs.items():
            if e164_to_int(e164) not in snapshot or not isinstance(ref, str):
                raise SnapshotError("a reference names no entry of the list, or is not a string")
        refs_blob = json.dumps(dict(sorted(refs.items())), separators=(",", ":")).encode()
    header = _HEADER.pack(
        MAGIC,
        FORMAT_VERSION,
        0,
        snapshot.version,
        len(snapshot),
        bytes.fromhex(snapshot.checksum),
        len(payload),
        len(refs_blob),
    )
    body = header + payload + refs_blob
    return body + hashlib.blake2b(body, digest_size=_TRAILER_BYTES).digest()


def write_snapshot(
    path: str | os.PathLike[str], snapshot: ListSnapshot, refs: Mapping[str, str] | None = None
) -> None:
    """Write atomically: a temporary file beside the target, fsync, rename, fsync the directory."""
    target = Path(path)
    data = snapshot_to_bytes(snapshot, refs)
    try:
        _write_atomically(target, data)
    except OSError as exc:
        raise SnapshotFileError(f"{target}: cannot write: {exc.strerror or exc}") from None


def _write_atomically(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # The rename is durable only once the directory entry is on disk too.
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _split(data: bytes, where: str) -> tuple[tuple[int, int, int, bytes], memoryview, bytes]:
    if len(data) < _HEADER.size + _TRAILER_BYTES:
        if data[: len(MAGIC)] != MAGIC[: len(data)]:
            raise SnapshotFileError(f"{where}: not a upcs snapshot file (bad magic)")
        raise SnapshotFileError(f"{where}: truncated ({len(data)} bytes, header incomplete)")
    magic, fmt, flags, version, count, checksum, plen, rlen = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise SnapshotFileError(f"{where}: not a upcs snapshot file (bad magic)")
    if fmt != FORMAT_VERSION:
        raise SnapshotFileError(
            f"{where}: snapshot format {fmt}, this upcs reads format {FORMAT_VERSION}"
        )
    if flags:
        raise SnapshotFileError(f"{where}: unknown flags 0x{flags:04x} in header")
    expected = _HEADER.size + plen + rlen + _TRAILER_BYTES
    if len(data) != expected:
        raise SnapshotFileError(
            f"{where}: truncated or padded ({len(data)} bytes, header says {expected})"
        )
    view = memoryview(data)  # slices without copies: a 1M-entry payload is megabytes
    body, trailer = view[:-_TRAILER_BYTES], data[-_TRAILER_BYTES:]
    if hashlib.blake2b(body, digest_size=_TRAILER_BYTES).digest() != trailer:
        raise SnapshotFileError(f"{where}: corrupted (file checksum mismatch)")
    payload = view[_HEADER.size : _HEADER.size + plen]
    refs = data[_HEADER.size + plen : _HEADER.size + plen + rlen]
    return (version, count, plen, checksum), payload, refs


def read_snapshot_bytes(data: bytes, where: str = "snapshot") -> ListSnapshot:
    """Verify and decode a whole snapshot; raise SnapshotFileError naming `where` otherwise."""
    (version, count, _plen, checksum), payload, _refs = _split(data, where)
    try:
        # pyroaring reads any buffer; its stubs only name bytes.
        bitmap = FrozenBitMap64.deserialize(cast(bytes, payload))
    except Exception as exc:  # pyroaring raises ValueError or MemoryError on bad payloads
        raise SnapshotFileError(f"{where}: list payload does not decode ({exc})") from None
    if len(bitmap) != count:
        raise SnapshotFileError(f"{where}: header says {count} entries, payload has {len(bitmap)}")
    snap = ListSnapshot(bitmap, version)
    if snap.checksum != checksum.hex():
        raise SnapshotFileError(f"{where}: list checksum mismatch (content differs from header)")
    return snap


def _read(path: str | os.PathLike[str]) -> bytes:
    where = os.fspath(path)
    try:
        size = os.path.getsize(where)
        if size > MAX_SNAPSHOT_BYTES:
            raise SnapshotFileError(f"{where}: {size} bytes is larger than any upcs snapshot")
        with open(where, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise SnapshotFileError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise SnapshotFileError(f"{where}: is a directory, not a snapshot file") from None
    except PermissionError:
        raise SnapshotFileError(f"{where}: permission denied") from None
    except OSError as exc:
        raise SnapshotFileError(f"{where}: cannot read: {exc.strerror or exc}") from None


def read_snapshot(path: str | os.PathLike[str]) -> ListSnapshot:
    return read_snapshot_bytes(_read(path), os.fspath(path))


def read_refs(path: str | os.PathLike[str]) -> dict[str, str]:
    """The opaque references kept beside the entries (never needed for a lookup)."""
    where = os.fspath(path)
    _, _, refs = _split(_read(path), where)
    if not refs:
        return {}
    try:
        loaded = json.loads(refs)
    except ValueError:
        raise SnapshotFileError(f"{where}: references section is not JSON") from None
    if not isinstance(loaded, dict):
        raise SnapshotFileError(f"{where}: references section is not a JSON object")
    for key, value in loaded.items():
        try:
            e164_to_int(key)
        except SnapshotError:
            raise SnapshotFileError(f"{where}: a reference is keyed by a non-E.164 entry") from None
        if not isinstance(value, str):
            raise SnapshotFileError(f"{where}: a reference is not a string")
    return {str(k): str(v) for k, v in loaded.items()}
