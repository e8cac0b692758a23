"""SIP messages: parse (RFC 3261 §7, §18.3, §25) and render.

`parse_message` splits the header block once into (key, name, value) triples: key is the
lower-case full name (compact forms expanded, §7.3.3), name is kept as written so a forwarded
message changes only what the proxy changed. Only what every message needs is checked eagerly
(start line, the singleton headers, CSeq, Max-Forwards, Content-Length); Via, From/To and URIs
are parsed on demand by the proxy. Every failure raises `SipError` with the status to answer.
"""

from __future__ import annotations

import re
from typing import Final

from gateway.sip.errors import SipError
from gateway.sip.headers import NameAddr, Via, parse_name_addr, parse_via, split_list
from gateway.sip.limits import (
    MAX_CONTENT_LENGTH,
    MAX_CSEQ,
    MAX_FORWARDS_LIMIT,
    MAX_HEADER_BLOCK_BYTES,
    MAX_HEADERS,
    MAX_MESSAGE_BYTES,
    MAX_VIA_DEPTH,
    SIP_VERSION,
)
from gateway.sip.uri import parse_uri

__all__ = ["COMPACT_FORMS", "Header", "Message", "parse_message"]

Header = tuple[str, str, str]  # (key: lower-case full name, name as written, value)

# RFC 3261 §7.3.3 and §20 compact forms, plus those registered since (RFC 3515 r, RFC 3265 o/u,
# RFC 3892 b, RFC 4028 x, RFC 3841 a/j/d, RFC 4474 y/n).
COMPACT_FORMS: Final[dict[str, str]] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "r": "refer-to",
    "o": "event",
    "u": "allow-events",
    "b": "referred-by",
    "x": "session-expires",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
    "n": "identity-info",
}
# Headers that may appear once only (§20: no "#" list form); a second one is a 400 (RFC 4475
# multi01, mcl01).
_SINGLETONS: Final = frozenset(
    {"call-id", "cseq", "from", "to", "max-forwards", "content-length", "refer-to"}
)
# Header names seen so far, as written (with any whitespace before the colon) ->
# (key, name, whether parse_message keeps its first value aside).
_NAMES: dict[str, tuple[str, str, bool]] = {}
_NAMES_CACHE_MAX = 4096  # distinct spellings kept; real traffic uses a few dozen
# Headers whose first value parse_message keeps aside (the singletons, plus Via and Date).
_TRACKED: Final = _SINGLETONS | {"via", "date"}
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
# RFC 3261 §27.4 methods and the common extensions: known tokens skip the token regex.
_METHODS: Final = frozenset(
    {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "MESSAGE", "SUBSCRIBE", "NOTIFY",
     "REFER", "INFO", "UPDATE", "PRACK", "PUBLISH"}
)  # fmt: skip
_FOLD_RE = re.compile(r"[ \t]*\r\n[ \t]+")
_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} GMT\Z"
)


class Message:
    """A SIP request (`method` set) or response (`status` set); headers in wire order."""

    __slots__ = (
        "_from",
        "_to",
        "_top",
        "_vias",
        "body",
        "call_id",
        "cseq",
        "cseq_method",
        "headers",
        "max_forwards",
        "method",
        "reason",
        "status",
        "uri",
    )

    def __init__(
        self,
        method: str | None,
        uri: str,
        status: int,
        reason: str,
        headers: list[Header],
        *,
        body: bytes = b"",
    ) -> None:
        self.method = method
        self.uri = uri
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.call_id = ""
        self.cseq = 0
        self.cseq_method = ""
        self.max_forwards: int | None = None
        self._vias: list[str] | None = None
        self._top: Via | None = None
        self._from: NameAddr | None = None
        self._to: NameAddr | None = None

    @classmethod
    def request(cls, method: str, uri: str, headers: list[Header], body: bytes = b"") -> Message:
        return cls(method, uri, 0, "", headers, body=body)

    @classmethod
    def response(
        cls, status: int, reason: str, headers: list[Header], body: bytes = b""
    ) -> Message:
        return cls(None, "", status, reason, headers, body=body)

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def copy(self) -> Message:
        """A copy whose header list can be changed without touching this one."""
        m = Message(
            self.method, self.uri, self.status, self.reason, list(self.headers), body=self.body
        )
        m.call_id, m.cseq, m.cseq_method = self.call_id, self.cseq, self.cseq_method
        m.max_forwards = self.max_forwards
        # What was parsed of Via, From and To describes the copy's fields too, until one of
        # the changing methods below drops it (a relayed response pops the Via it split).
        m._vias = self._vias
        m._top = self._top
        m._from = self._from
        m._to = self._to
        return m

    # -- reading -------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        """The value of the first header with this (lower-case, full) name."""
        for k, _, v in self.headers:
            if k == key:
                return v
        return None

    def values(self, key: str) -> list[str]:
        """Every comma-separated value of every header with this name, in order (§7.3.1)."""
        out: list[str] = []
        for k, _, v in self.headers:
            if k == key:
                out.extend(split_list(v))
        return out

    def via_values(self) -> list[str]:
        """The raw Via values, top first (split lazily, once)."""
        if self._vias is None:
            vias = self.values("via")
            if len(vias) > MAX_VIA_DEPTH:
                raise SipError(400, f"Via: more than {MAX_VIA_DEPTH} entries", self)
            if "" in vias:
                raise SipError(400, "Via: empty list element", self)
            self._vias = vias
        return self._vias

    def top_via(self) -> Via:
        """The first Via, parsed once (every transaction decision starts from it)."""
        if self._top is not None:
            return self._top
        vias = self.via_values()
        if not vias:
            raise SipError(400, "no Via", self)
        try:
            self._top = parse_via(vias[0])
        except SipError as e:
            raise SipError(e.status, e.reason, self) from None
        return self._top

    def from_(self) -> NameAddr:
        if self._from is None:
            self._from = self._name_addr("from")
        return self._from

    def to(self) -> NameAddr:
        if self._to is None:
            self._to = self._name_addr("to")
        return self._to

    def _name_addr(self, key: str) -> NameAddr:
        value = self.get(key)
        if value is None:
            raise SipError(400, f"no {key} header", self)
        try:
            return parse_name_addr(value, key)
        except SipError as e:
            raise SipError(e.status, e.reason, self) from None

    def validate(self) -> None:
        """The header fields a proxy relies on or passes on must parse (RFC 4475 §3.1.2)."""
        try:
            self.from_()
            self.to()
            self.top_via()
            for value in self.via_values()[1:]:
                parse_via(value)
            for value in self.values("contact"):
                if value == "*" and self.method == "REGISTER":
                    continue
                na = parse_name_addr(value, "Contact")
                uri = parse_uri(na.uri, "Contact")
                if uri.headers is not None and not na.bracketed:
                    raise SipError(400, "Contact: URI headers outside <>")
        except SipError as e:
            raise SipError(e.status, e.reason, self) from None

    # -- changing (on a copy) ------------------------------------------------------------

    def prepend(self, key: str, name: str, value: str) -> None:
        """Add a header above every other (a new top Via or Record-Route)."""
        self.headers.insert(0, (key, name, value))
        self._changed(key)

    def set(self, key: str, name: str, value: str) -> None:
        """Replace the first header with this name, or append one."""
        for i, (k, n, _) in enumerate(self.headers):
            if k == key:
                self.headers[i] = (k, n, value)
                self._changed(key)
                return
        self.headers.append((key, name, value))
        self._changed(key)

    def remove(self, key: str) -> None:
        self.headers = [h for h in self.headers if h[0] != key]
        self._changed(key)

    def _changed(self, key: str) -> None:
        """Forget what was parsed of a header that has just changed."""
        if key == "via":
            self._vias = None
            self._top = None
        elif key == "from":
            self._from = None
        elif key == "to":
            self._to = None

    def pop_first_value(self, key: str) -> str | None:
        """Remove and return the first list value of a header (top Via, top Route)."""
        for i, (k, n, v) in enumerate(self.headers):
            if k == key:
                parts = split_list(v)
                if len(parts) == 1:
                    del self.headers[i]
                else:
                    self.headers[i] = (k, n, ", ".join(parts[1:]))
                if key == "via" and self._vias is not None:
                    # parts[0] is via_values()[0], and the rest splits as it did (the parts
                    # were split at their top-level commas and stripped): keep the rest.
                    self._vias = self._vias[1:]
                    self._top = None
                else:
                    self._changed(key)
                return parts[0]
        return None

    # -- rendering -----------------------------------------------------------------------

    def render(self) -> bytes:
        """Wire bytes; Content-Length always states the body actually sent (§18.3, §20.14)."""
        if self.method is not None:
            lines = [f"{self.method} {self.uri} {SIP_VERSION}"]
        else:
            lines = [f"{SIP_VERSION} {self.status} {self.reason}"]
        for k, n, v in self.headers:
            if k != "content-length":
                lines.append(f"{n}: {v}")
        lines.append(f"Content-Length: {len(self.body)}\r\n\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body


def parse_message(data: bytes, *, framed: bool = False) -> Message:
    """Parse one message. `framed`: the body is exactly what follows the header block (TCP).

    On UDP (framed False) a Content-Length shorter than the rest of the datagram cuts the body
    (extra octets are discarded) and a longer one is a 400 (§18.3, RFC 4475 clerr); with no
    Content-Length the body is the rest of the datagram.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipError(
            513, f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}", _head_of(data)
        )
    if data[:2] == b"\r\n":  # CRLFs before the start line are ignored (§7.5)
        data = data.lstrip(b"\r\n")
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise SipError(400, "header block not ended by an empty line")
    head = data[:end].decode("utf-8", "surrogateescape")
    lines = head.split("\r\n")
    n = len(lines) - 1
    # Every CR and LF must belong to a CRLF. Folding (below) only ever removes whole CRLFs, so
    # checking before it is the same as checking after it.
    if head.count("\n") != n or head.count("\r") != n:
        raise SipError(400, "bare CR or LF in header block")
    msg, single = _parse_lines(lines, head, folded=False)
    if len(msg.headers) > MAX_HEADERS:
        raise SipError(400, f"more than {MAX_HEADERS} header fields", msg)
    body = data[end + 4 :]
    cl = single.get("content-length")
    if cl is not None:
        if not cl.isdigit() or not cl.isascii():
            raise SipError(400, "Content-Length is not a number", msg)
        n = int(cl)
        if n > MAX_CONTENT_LENGTH or n > len(body) or (framed and n != len(body)):
            raise SipError(400, "Content-Length disagrees with the body", msg)
        if n < len(body):
            body = body[:n]
    msg.body = body
    _check_common(msg, single)
    return msg


def _parse_lines(lines: list[str], head: str, *, folded: bool) -> tuple[Message, dict[str, str]]:
    """The start line and header fields; `single` holds the first value of each _TRACKED key.

    Line folding (§7.3.1: CRLF then SP/HTAB continues a field, equivalent to one SP) is rare,
    so it is not searched for up front: a continuation line starts with SP/HTAB, so it has no
    colon or fails the header-name check, and every failure in the loop first asks whether the
    block holds a fold; if so the unfolded block is parsed again, exactly as if folded first.
    """
    start = lines[0]
    bad_start: SipError | None = None
    try:
        msg = _response_line(start) if start.startswith("SIP/") else _request_line(start)
    except SipError as e:
        # Read the headers anyway, so the 400/505 can carry Via, From, To... (§8.2.6.2).
        bad_start = e
        if start.startswith("SIP/"):
            msg = Message(None, "", 0, "", [])
        else:
            msg = Message(start.split(" ", 1)[0] or "?", "", 0, "", [])
    headers = msg.headers
    append = headers.append
    single: dict[str, str] = {}
    names = _NAMES
    problem = ""
    for i in range(1, len(lines)):
        raw_name, colon, value = lines[i].partition(":")
        if not colon:
            problem = "header line without a colon"
            break
        known = names.get(raw_name)
        if known is None:
            known = _header_name(raw_name)
            if known is None:
                problem = "bad header name"
                break
        key, name, tracked = known
        value = value.strip(" \t")
        append((key, name, value))
        if tracked:
            if key not in single:
                single[key] = value
            elif key in _SINGLETONS:
                problem = f"more than one {key} header"
                break
    if problem:
        if not folded and ("\r\n " in head or "\r\n\t" in head):
            return _parse_lines(_FOLD_RE.sub(" ", head).split("\r\n"), head, folded=True)
        raise SipError(400, problem, msg)
    if bad_start is not None:
        raise SipError(bad_start.status, bad_start.reason, msg)
    return msg, single


def _head_of(data: bytes) -> Message | None:
    """The header block of an oversized message, so the 513 can be addressed (§21.5.14)."""
    end = data.find(b"\r\n\r\n", 0, MAX_HEADER_BLOCK_BYTES - 4)
    if end < 0:
        return None
    try:
        return parse_message(data[: end + 4])
    except SipError as e:  # the body is cut off, so Content-Length disagrees: keep the headers
        return e.partial


def _header_name(raw: str) -> tuple[str, str, bool] | None:
    """Check a header name once and remember it: names repeat across messages, so the hot
    path is one dict lookup (the cache is bounded so junk names cannot grow it). None for a
    name that is not a token (§25.1)."""
    name = raw.rstrip(" \t")
    if not _TOKEN_RE.match(name):
        return None
    key = name.lower()
    if len(key) == 1:
        key = COMPACT_FORMS.get(key, key)
    known = (key, name, key in _TRACKED)
    if len(_NAMES) < _NAMES_CACHE_MAX:
        _NAMES[raw] = known
    return known


def _request_line(start: str) -> Message:
    parts = start.split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise SipError(400, "malformed request line")
    method, uri, version = parts
    if version != SIP_VERSION:
        if version.startswith("SIP/"):
            raise SipError(505, "unsupported SIP version")
        raise SipError(400, "malformed request line")
    if method not in _METHODS and not _TOKEN_RE.match(method):
        raise SipError(400, "bad method")
    if "<" in uri or ">" in uri:
        raise SipError(400, "Request-URI in angle brackets")
    return Message(method, uri, 0, "", [])


def _response_line(start: str) -> Message:
    if not start.startswith("SIP/2.0 ") or len(start) < 11:
        raise SipError(400, "malformed status line")
    code = start[8:11]
    if not (code.isdigit() and code.isascii()) or (len(start) > 11 and start[11] != " "):
        raise SipError(400, "malformed status code")
    status = int(code)
    if not 100 <= status <= 699:
        raise SipError(400, "status code out of range")
    return Message(None, "", status, start[12:], [])


def _check_common(msg: Message, single: dict[str, str]) -> None:
    """The fields every message must carry (§8.1.1), checked once at parse time."""
    call_id = single.get("call-id")
    # word ["@" word] (§25.1): printable ASCII without whitespace, i.e. [!-~]+ (isprintable
    # rejects the controls and DEL; the strip in the header loop leaves no edge SP/HTAB).
    if not call_id or not (call_id.isascii() and call_id.isprintable()) or " " in call_id:
        raise SipError(400, "missing or malformed Call-ID", msg)
    msg.call_id = call_id
    cseq = single.get("cseq")
    if cseq is None:
        raise SipError(400, "no CSeq", msg)
    num, _, method = cseq.partition(" ")
    method = method.strip(" \t")
    if not num.isdigit() or not num.isascii() or len(num) > 10:
        raise SipError(400, "bad CSeq number", msg)
    seq = int(num)
    if seq > MAX_CSEQ:
        raise SipError(400, "bad CSeq number", msg)
    if method != msg.method and not _TOKEN_RE.match(method):
        raise SipError(400, "bad CSeq method", msg)
    msg.cseq = seq
    msg.cseq_method = method
    if "from" not in single or "to" not in single:
        raise SipError(400, "missing From or To", msg)
    if "via" not in single:
        raise SipError(400, "no Via", msg)
    if msg.method is not None:
        if method != msg.method:
            raise SipError(400, "CSeq method differs from the request method", msg)
        mf = single.get("max-forwards")
        if mf is not None:
            hops = int(mf) if mf.isdigit() and mf.isascii() and len(mf) <= 4 else -1
            if not 0 <= hops <= MAX_FORWARDS_LIMIT:
                raise SipError(400, "bad Max-Forwards", msg)
            msg.max_forwards = hops
        date = single.get("date")
        if date is not None and not _DATE_RE.match(date):
            raise SipError(400, "Date is not an RFC 1123 GMT date", msg)
