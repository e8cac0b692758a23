"""Dialogs started from the PBX (RFC 3261 §12): the only thing the trunk may send requests into.

A dialog is keyed by Call-ID and the PBX's tag; the trunk's tags (one per fork) join it from
provisional and 2xx responses. A request from the PBX belongs to a dialog when its From tag is
the PBX tag and its To tag one of the trunk's; a request from the trunk when it is the other way
round. Early dialogs live as long as the INVITE could; confirmed ones until BYE or until idle.

Expiry is a timing wheel: each dialog sits in the bucket of its expiry time, and a closed
dialog leaves its bucket at once, so memory follows live dialogs only (a heap entry per dialog
would keep every ended call for hours at thousands of calls a second).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

__all__ = ["BUCKET_S", "Dest", "Dialog", "DialogTable"]

Dest = tuple[str, str, int]  # (transport, host, port)
# Expiry granularity: a dialog may outlive its idle limit by up to this much.
BUCKET_S = 10.0


@dataclass(slots=True, eq=False)
class Dialog:
    call_id: str
    pbx_tag: str
    pbx_dest: Dest  # where the trunk's requests in this dialog are sent
    targets: tuple[str, ...]  # the dial strings screened allowed when it started
    remote_tags: set[str] = field(default_factory=set)
    confirmed: bool = False
    expires: float = 0.0
    bucket: int = -1


class DialogTable:
    __slots__ = ("_buckets", "_dialogs", "_due", "max_dialogs")

    def __init__(self, max_dialogs: int) -> None:
        self._dialogs: dict[tuple[str, str], Dialog] = {}
        self._buckets: dict[int, set[Dialog]] = {}
        self._due: list[int] = []  # bucket numbers, a heap
        self.max_dialogs = max_dialogs

    def __len__(self) -> int:
        return len(self._dialogs)

    def open(
        self, call_id: str, pbx_tag: str, pbx_dest: Dest, targets: tuple[str, ...], until: float
    ) -> tuple[Dialog | None, float | None]:
        """The dialog for a dialog-creating request from the PBX (None when full), and a new
        wake-up time for `expire` if one is needed."""
        key = (call_id, pbx_tag)
        dialog = self._dialogs.get(key)
        if dialog is None:
            if len(self._dialogs) >= self.max_dialogs:
                return None, None
            dialog = Dialog(call_id, pbx_tag, pbx_dest, targets)
            self._dialogs[key] = dialog
        return dialog, self.touch(dialog, until)

    def touch(self, dialog: Dialog, until: float) -> float | None:
        """Keep a dialog until at least `until`; returns a new wake-up time if one is needed."""
        if until <= dialog.expires:
            return None
        dialog.expires = until
        bucket = int(until // BUCKET_S) + 1
        if bucket == dialog.bucket:
            return None
        self._unbucket(dialog)
        dialog.bucket = bucket
        members = self._buckets.get(bucket)
        if members is not None:
            members.add(dialog)
            return None
        self._buckets[bucket] = {dialog}
        heapq.heappush(self._due, bucket)
        return bucket * BUCKET_S

    def find(self, call_id: str, from_tag: str, to_tag: str, from_trunk: bool) -> Dialog | None:
        if from_trunk:
            d = self._dialogs.get((call_id, to_tag))
            return d if d is not None and from_tag in d.remote_tags else None
        d = self._dialogs.get((call_id, from_tag))
        return d if d is not None and to_tag in d.remote_tags else None

    def close(self, dialog: Dialog) -> None:
        key = (dialog.call_id, dialog.pbx_tag)
        if self._dialogs.get(key) is dialog:
            del self._dialogs[key]
        self._unbucket(dialog)

    def expire(self, now: float) -> None:
        """Drop every dialog whose time is up."""
        due = self._due
        while due and due[0] * BUCKET_S <= now:
            bucket = heapq.heappop(due)
            for dialog in self._buckets.pop(bucket, ()):
                dialog.bucket = -1
                key = (dialog.call_id, dialog.pbx_tag)
                if self._dialogs.get(key) is dialog:
                    del self._dialogs[key]

    def _unbucket(self, dialog: Dialog) -> None:
        members = self._buckets.get(dialog.bucket)
        if members is not None:
            members.discard(dialog)
            if not members:
                del self._buckets[dialog.bucket]
        dialog.bucket = -1
