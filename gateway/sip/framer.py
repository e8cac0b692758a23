"""Framing SIP messages on a byte stream (TCP) by Content-Length (RFC 3261 §18.3)."""

from __future__ import annotations

import re

from gateway.sip.errors import SipError
from gateway.sip.limits import MAX_HEADER_BLOCK_BYTES, MAX_MESSAGE_BYTES

__all__ = ["StreamFramer"]

# Content-Length or its compact form "l" at the start of a header line (§7.3.3, §20.14).
_CL_RE = re.compile(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)


class StreamFramer:
    """Bytes in, whole messages out. After a `SipError` the stream cannot be trusted: close it.

    CRLFs between messages are skipped (§7.5; they are also RFC 5626 keep-alives). Content-Length
    is mandatory on a stream (§18.3, §20.14): without it the next message's start is unknown.
    """

    __slots__ = ("_buf", "_error")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._error: SipError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """The whole messages completed by `data`. When a bad message follows good ones in
        the same chunk, the good ones are returned and the error is raised by the next call."""
        if self._error is not None:
            raise self._error
        self._buf += data
        out: list[bytes] = []
        try:
            self._frame(out)
        except SipError as e:
            if not out:
                raise
            self._error = e
        return out

    def _frame(self, out: list[bytes]) -> None:
        buf = self._buf
        while True:
            skip = 0
            while buf[skip : skip + 2] == b"\r\n":
                skip += 2
            if skip:
                del buf[:skip]
            if not buf:
                break
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEADER_BLOCK_BYTES:
                    raise SipError(513, "header block too long on stream")
                break
            head = bytes(buf[: end + 2])
            found = _CL_RE.findall(head)
            if not found:
                raise SipError(400, "no Content-Length on a stream transport")
            if len(found) > 1:
                raise SipError(400, "more than one Content-Length")
            text = found[0].strip(b" \t")
            if not text.isdigit() or len(text) > 10:
                raise SipError(400, "Content-Length is not a number")
            total = end + 4 + int(text)
            if total > MAX_MESSAGE_BYTES:
                raise SipError(513, f"message of {total} bytes exceeds {MAX_MESSAGE_BYTES}")
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
