"""The one error the SIP core raises: who broke the rules, and what to answer (STYLE.md rule 3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.sip.message import Message

__all__ = ["REASONS", "SipError"]

# Reason phrases for the statuses the core generates (RFC 3261 §21).
REASONS: dict[int, str] = {
    100: "Trying",
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    405: "Method Not Allowed",
    408: "Request Timeout",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    487: "Request Terminated",
    500: "Server Internal Error",
    503: "Service Unavailable",
    505: "Version Not Supported",
    513: "Message Too Large",
}


class SipError(Exception):
    """A peer sent something the core will not accept.

    `status` is the SIP status to answer with (400, 416, 420, 482, 483, 505, 513); `reason` says
    what was wrong and where, for logs. It never quotes a Request-URI user part (a victim's
    number must not reach a log in clear: safety invariant 4).
    """

    def __init__(self, status: int, reason: str, partial: Message | None = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        # The message as far as it could be split into a start line and header fields, so the
        # proxy can still copy Via/From/To/Call-ID/CSeq into its error response (§8.2.6.2).
        self.partial = partial

    @property
    def phrase(self) -> str:
        """The standard reason phrase to put on the status line."""
        return REASONS.get(self.status, "Bad Request")
