"""Header-field grammar: lists, parameters, name-addr, Via (RFC 3261 §7.3, §20, §25.1).

Everything here is called lazily, only for the headers the proxy needs, so an INVITE pays for the
Via and the From/To tags it uses and nothing else. Malformed values raise `SipError(400)`.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from gateway.sip.errors import SipError
from gateway.sip.uri import parse_host

__all__ = [
    "NameAddr",
    "Params",
    "Via",
    "parse_name_addr",
    "parse_params",
    "parse_via",
    "split_list",
]

Params = tuple[tuple[str, str | None], ...]

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")  (§25.1)
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
# A generic-param value: token, host (incl. IPv6 reference, RFC 5118 §4.5 also without brackets)
# or quoted-string (handled separately).
_GEN_VALUE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+\Z")
# Display name without quotes: *(token LWS)  (§25.1 display-name), i.e. empty or a token
# character followed by token characters and SP/HTAB. Written without the nested repeat
# `(?:token+ LWS*)*`, whose backtracking is exponential in the length of a name that fails
# (a 30-character From display name ending in '@' took seconds: a one-packet stall).
_DISPLAY_TOKENS_RE = re.compile(r"(?:[A-Za-z0-9\-.!%*_+`'~][A-Za-z0-9\-.!%*_+`'~ \t]*)?\Z")
_VIA_RE = re.compile(
    r"SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:[ \t]*:[ \t]*([0-9]+))?[ \t]*(;.*)?\Z",
    re.S,
)


# Via transports (RFC 3261 §20.42, RFC 7118 WS/WSS): tokens, so these skip the token regex.
_TRANSPORTS = frozenset({"UDP", "TCP", "TLS", "SCTP", "WS", "WSS"})
# Parameter names checked once at import: the common ones skip the token regex.
_KNOWN_NAMES = frozenset(
    {"branch", "rport", "received", "tag", "lr", "transport", "user", "maddr", "ttl", "q",
     "expires", "method", "ext", "phone-context", "ob", "alias"}
)  # fmt: skip


def _quoted_end(s: str, start: int) -> int:
    """Index just past the quoted-string opening at `start`, honouring quoted-pairs (§25.1)."""
    i = start + 1
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        i += 1
    raise SipError(400, "unterminated quoted string")


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, not inside quoted strings or <...> (§7.3.1)."""
    if '"' not in value and "<" not in value:
        return [p.strip(" \t") for p in value.split(",")]
    out: list[str] = []
    start = 0
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c == '"':
            i = _quoted_end(value, i)
            continue
        if c == "<":
            end = value.find(">", i)
            if end < 0:
                raise SipError(400, "unterminated '<'")
            i = end + 1
            continue
        if c == ",":
            out.append(value[start:i].strip(" \t"))
            start = i + 1
        i += 1
    out.append(value[start:].strip(" \t"))
    return out


def parse_params(text: str, where: str) -> Params:
    """Parse `*( SEMI generic-param )` (§25.1), LWS allowed around ';' and '='."""
    text = text.strip(" \t")
    if not text:
        return ()
    if not text.startswith(";"):
        raise SipError(400, f"{where}: junk before parameters")
    return _param_list(text[1:], where)


def _param_list(text: str, where: str) -> Params:
    """The parameters after a first ';' (parse_params without its checks of the edges: every
    name and value is stripped of LWS on its own, so outer LWS changes nothing)."""
    pieces = _split_quoted_semis(text) if '"' in text else text.split(";")
    out: list[tuple[str, str | None]] = []
    for piece in pieces:
        name, eq, value = piece.partition("=")
        if name not in _KNOWN_NAMES:
            name = name.strip(" \t")
            if not _TOKEN_RE.match(name):
                raise SipError(400, f"{where}: bad parameter name")
        if not eq:
            out.append((name.lower(), None))
            continue
        value = value.strip(" \t")
        if value.startswith('"'):
            if _quoted_end(value, 0) != len(value):
                raise SipError(400, f"{where}: junk after quoted parameter")
        elif not _GEN_VALUE_RE.match(value):
            raise SipError(400, f"{where}: bad parameter value")
        out.append((name.lower(), value))
    return tuple(out)


def _split_quoted_semis(text: str) -> list[str]:
    out: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i = _quoted_end(text, i)
            continue
        if c == ";":
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return out


def _param(params: Params, name: str) -> str | None:
    for k, v in params:
        if k == name:
            return "" if v is None else v
    return None


class NameAddr(NamedTuple):
    """One From/To/Contact/Route value: display name, URI text, header parameters (§20.10).

    A NamedTuple rather than a frozen dataclass: built for every From/To, and tuples are
    constructed in C."""

    display: str | None
    uri: str
    params: Params
    bracketed: bool

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    @property
    def tag(self) -> str | None:
        return _param(self.params, "tag")


@functools.lru_cache(maxsize=4096)  # Contact, Route, P-Asserted-Identity values repeat
def parse_name_addr(value: str, where: str) -> NameAddr:
    """Parse `( name-addr / addr-spec ) *( SEMI param )` (§25.1 from-spec, contact-param, ...)."""
    s = value.strip(" \t")
    display: str | None = None
    if s.startswith('"'):
        end = _quoted_end(s, 0)
        display = s[:end]
        rest = s[end:].lstrip(" \t")
        if not rest.startswith("<"):
            raise SipError(400, f"{where}: quoted display name without <URI>")
        lt = len(s) - len(rest)
    else:
        lt = s.find("<")
        if lt >= 0:
            if not _DISPLAY_TOKENS_RE.match(s[:lt]):
                raise SipError(400, f"{where}: display name must be tokens or quoted")
            display = s[:lt].strip(" \t") or None
    if lt >= 0:
        gt = s.find(">", lt)
        if gt < 0:
            raise SipError(400, f"{where}: unterminated <URI>")
        uri = s[lt + 1 : gt]
        # No LWS inside the brackets: RAQUOT/LAQUOT absorb it only outside (RFC 4475 badaspec).
        if not uri or uri != uri.strip(" \t") or " " in uri or "\t" in uri:
            raise SipError(400, f"{where}: whitespace or nothing inside <URI>")
        return NameAddr(display, uri, parse_params(s[gt + 1 :], where), True)
    # addr-spec form: the URI cannot hold ';' ',' or '?' (§20.10), so parameters start at ';'.
    uri, semi, params = s.partition(";")
    uri = uri.rstrip(" \t")
    if not uri or "?" in uri or " " in uri or "\t" in uri or "," in uri or '"' in uri:
        raise SipError(400, f"{where}: bad addr-spec")
    return NameAddr(None, uri, _param_list(params, where) if semi else (), False)


class Via(NamedTuple):
    """One Via value (§20.42): transport, sent-by and parameters (a NamedTuple, see NameAddr)."""

    transport: str  # upper case
    host: str
    port: int | None
    params: Params

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    @property
    def branch(self) -> str | None:
        return _param(self.params, "branch")

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"


def parse_via(value: str) -> Via:
    """Parse one Via value (after list splitting); LWS is allowed inside sent-protocol (§25.1)."""
    value = value.strip(" \t")
    if value.startswith("SIP/2.0/"):
        # Fast path for the usual compact form "SIP/2.0/UDP host:port;params".
        head, semi, rest = value.partition(";")
        transport, sp, hostport = head[8:].partition(" ")
        if (
            sp
            and hostport
            and (transport in _TRANSPORTS or _TOKEN_RE.match(transport))
            and " " not in hostport
            and "\t" not in hostport
        ):
            host, port = parse_host(hostport, "Via")
            params = _param_list(rest, "Via") if semi else ()
            if _param(params, "branch") == "":
                raise SipError(400, "Via: empty branch")
            return Via(transport.upper(), host, port, params)
    m = _VIA_RE.match(value)
    if m is None:
        raise SipError(400, "Via: malformed")
    transport, host, port_text, params_text = m.groups()
    hostport = host if port_text is None else f"{host}:{port_text}"
    host, port = parse_host(hostport, "Via")
    params = parse_params(params_text, "Via") if params_text else ()
    branch = _param(params, "branch")
    if branch == "":
        raise SipError(400, "Via: empty branch")
    return Via(transport.upper(), host, port, params)
