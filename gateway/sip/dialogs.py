"""Dialogs started from the PBX (RFC 3261 §12): the only thing the trunk may send requests into.

A dialog is keyed by Call-ID and the PBX's tag; the trunk's tags (one per fork) join it from
provisional and 2xx responses. A request from the PBX belongs to a dialog when its From tag is
the PBX tag and its To tag one of the trunk's; a request from the trunk when it is the other way
round. Early dialogs live as long as the INVITE could; confirmed ones until BYE or until idle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Dest", "Dialog", "DialogTable"]

Dest = tuple[str, str, int]  # (transport, host, port)


@dataclass(slots=True, eq=False)
class Dialog:
    call_id: str
    pbx_tag: str
    pbx_dest: Dest  # where the trunk's requests in this dialog are sent
    targets: tuple[str, ...]  # the dial strings screened allowed when it started
    remote_tags: set[str] = field(default_factory=set)
    confirmed: bool = False
    expires: float = 0.0


class DialogTable:
    __slots__ = ("_dialogs", "max_dialogs")

    def __init__(self, max_dialogs: int) -> None:
        self._dialogs: dict[tuple[str, str], Dialog] = {}
        self.max_dialogs = max_dialogs

    def __len__(self) -> int:
        return len(self._dialogs)

    def open(
        self, call_id: str, pbx_tag: str, pbx_dest: Dest, targets: tuple[str, ...], until: float
    ) -> Dialog | None:
        """The dialog for a new dialog-creating request from the PBX (None when full)."""
        key = (call_id, pbx_tag)
        dialog = self._dialogs.get(key)
        if dialog is None:
            if len(self._dialogs) >= self.max_dialogs:
                return None
            dialog = Dialog(call_id, pbx_tag, pbx_dest, targets)
            self._dialogs[key] = dialog
        dialog.expires = max(dialog.expires, until)
        return dialog

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

    def expire(self, dialog: Dialog, now: float) -> bool:
        """Drop the dialog if its time is up; False when it has been extended since."""
        if dialog.expires > now:
            return False
        self.close(dialog)
        return True
