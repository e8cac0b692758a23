"""One writer swaps the list; many readers see an immutable snapshot (STYLE.md rule 6).

Assigning an attribute is atomic under the GIL and in asyncio, so a reader that took
`holder.current` keeps a complete snapshot for as long as it likes; the hot path takes no lock.
"""

from __future__ import annotations

from collections.abc import Callable

from blocklist.snapshot import ListSnapshot

__all__ = ["ListHolder"]


class ListHolder:
    """The current snapshot, swapped by exactly one writer."""

    __slots__ = ("_listeners", "current")

    def __init__(self, snapshot: ListSnapshot) -> None:
        self.current: ListSnapshot = snapshot
        self._listeners: list[Callable[[ListSnapshot], None]] = []

    def swap(self, snapshot: ListSnapshot) -> None:
        """Publish `snapshot` to every reader at once, then tell the listeners (metrics)."""
        self.current = snapshot
        for listener in tuple(self._listeners):
            listener(snapshot)

    def on_swap(self, listener: Callable[[ListSnapshot], None]) -> None:
        self._listeners.append(listener)
