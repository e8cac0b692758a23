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

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
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
                if buf == b"\r":
                    break
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
        return out
