"""SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966) and the dial string they carry.

Parsing is strict: anything outside the grammar raises `SipError(400)`. A scheme other than
sip/sips/tel parses as an opaque absolute URI (RFC 3261 §25.1 absoluteURI) so that To/From may
carry one (RFC 4475 unksm2); the proxy answers 416 when one is a Request-URI (§8.2.2.1).

`dial_targets` turns a URI into the dial strings to screen, or None when it cannot do so without
doubt (fail closed, DESIGN.md rule 6): no user part, a password, letters, a bad escape, an
unknown user parameter or a phone-context that is not a global number prefix.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from gateway.sip.errors import SipError
from gateway.sip.limits import MAX_URI_CHARS

__all__ = ["Uri", "dial_targets", "format_host", "parse_host", "parse_uri", "unescape"]

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")
_ESCAPE_BAD_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_UNRESERVED = "A-Za-z0-9\\-_.!~*'()"
# user = 1*( unreserved / escaped / user-unreserved ), user-unreserved = & = + $ , ; ? /
_USER_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|%[0-9A-Fa-f]{{2}})+\Z")
# password = *( unreserved / escaped / & = + $ , )
_PASSWORD_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|%[0-9A-Fa-f]{{2}})*\Z")
# paramchar = param-unreserved / unreserved / escaped; param-unreserved = [ ] / : & + $
_PARAM_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|%[0-9A-Fa-f]{{2}})+\Z")
# hnv-unreserved = [ ] / ? : + $
_HEADERS_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$=&]|%[0-9A-Fa-f]{{2}})*\Z")
_HOSTNAME_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?\Z"
)
_IPV4_RE = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\Z")
_PORT_RE = re.compile(r"\d{1,5}\Z")
# RFC 3966 §3 telephone-subscriber characters before the first ';' (digits, hex for local
# numbers, * #, visual separators - . ( ), a leading +), plus %HH escapes.
_TEL_NUMBER_RE = re.compile(r"(?:[0-9A-Fa-f*#+\-.()]|%[0-9A-Fa-f]{2})+\Z")
_OPAQUE_RE = re.compile(r"[!-~]+\Z")  # absoluteURI body: printable, no whitespace

# Characters a dial string may hold after unescaping: what the screener reads (digits, '+',
# RFC 3966 §5.1.1 visual separators, post-dial pause/wait and DTMF). Anything else: doubt.
_DIAL_CHARS = frozenset("0123456789+*#,pPwW -.()/")
_DIGITS = frozenset("0123456789")
# User-part parameters that do not change where a call goes (RFC 3966 ext/isub; RFC 4694
# npdi/cic; RFC 4904 tgrp/trunk-context). Any other parameter is doubt.
_NEUTRAL_USER_PARAMS = frozenset(
    {"ext", "isub", "isub-encoding", "npdi", "cic", "tgrp", "trunk-context"}
)


@dataclass(frozen=True, slots=True)
class Uri:
    """A parsed URI. `user` stays escaped (decode it once, with `unescape`)."""

    scheme: str  # lower case
    user: str | None  # sip/sips userinfo user; for tel: the telephone-subscriber incl. params
    password: str | None
    host: str  # '' for tel and opaque URIs; IPv6 in brackets
    port: int | None
    params: tuple[tuple[str, str | None], ...]  # URI parameters, names lower case, raw values
    headers: str | None  # the '?' part, raw, or None
    raw: str

    def param(self, name: str) -> str | None:
        """The value of a URI parameter ('' for a flag parameter), or None when absent."""
        for k, v in self.params:
            if k == name:
                return "" if v is None else v
        return None

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")


def unescape(text: str) -> str | None:
    """Decode %HH escapes exactly once (RFC 3261 §19.1.2); None for a bad escape or bad UTF-8."""
    if "%" not in text:
        return text
    if _ESCAPE_BAD_RE.search(text):
        return None
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        return None


# Parsed URIs and host:port pairs are immutable and repeat across calls (the same PBX Contact,
# the same dialled numbers, our own Route): remember the last few thousand.
_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=_CACHE_SIZE)
def parse_host(hostport: str, where: str) -> tuple[str, int | None]:
    """Split and check `host[:port]` (RFC 3261 §25.1 hostport; IPv6 references per RFC 5118)."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise SipError(400, f"{where}: unterminated IPv6 reference")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise SipError(400, f"{where}: bad IPv6 reference") from None
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise SipError(400, f"{where}: junk after IPv6 reference")
        port_text = rest[1:]
    else:
        host, sep, port_text = hostport.partition(":")
        if not _HOSTNAME_RE.match(host):
            raise SipError(400, f"{where}: bad host")
        if _IPV4_RE.match(host) and any(int(octet) > 255 for octet in host.split(".")):
            raise SipError(400, f"{where}: bad IPv4 address")
        if not sep:
            return host, None
    if not _PORT_RE.match(port_text) or int(port_text) > 65535:
        raise SipError(400, f"{where}: bad port")
    return host, int(port_text)


def format_host(host: str) -> str:
    """A host for a Via or URI: IPv6 addresses go in brackets (RFC 3261 §25.1, RFC 5118)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _params(parts: list[str], where: str) -> tuple[tuple[str, str | None], ...]:
    out: list[tuple[str, str | None]] = []
    for p in parts:
        name, eq, value = p.partition("=")
        if not _PARAM_RE.match(name) or (eq and not _PARAM_RE.match(value)):
            raise SipError(400, f"{where}: bad URI parameter")
        out.append((name.lower(), value if eq else None))
    return tuple(out)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def parse_uri(text: str, where: str = "URI") -> Uri:
    """Parse one URI; raises SipError(400) when a sip/sips/tel URI breaks the grammar."""
    if len(text) > MAX_URI_CHARS:
        raise SipError(400, f"{where}: URI too long")
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.match(scheme):
        raise SipError(400, f"{where}: no URI scheme")
    scheme = scheme.lower()
    if scheme == "tel":
        return _parse_tel(rest, text, where)
    if scheme not in ("sip", "sips"):
        if not _OPAQUE_RE.match(rest):
            raise SipError(400, f"{where}: bad absolute URI")
        return Uri(scheme, None, None, "", None, (), None, text)
    at = rest.find("@")
    user: str | None = None
    password: str | None = None
    if at >= 0:
        if rest.find("@", at + 1) >= 0:
            raise SipError(400, f"{where}: more than one '@'")
        userinfo, hostpart = rest[:at], rest[at + 1 :]
        user, pcolon, pw = userinfo.partition(":")
        if not _USER_RE.match(user):
            raise SipError(400, f"{where}: bad user part")
        if pcolon:
            if not _PASSWORD_RE.match(pw):
                raise SipError(400, f"{where}: bad password")
            password = pw
    else:
        hostpart = rest
    hostpart, qmark, headers = hostpart.partition("?")
    if qmark and not _HEADERS_RE.match(headers):
        raise SipError(400, f"{where}: bad URI headers")
    pieces = hostpart.split(";")
    host, port = parse_host(pieces[0], where)
    params = _params(pieces[1:], where) if len(pieces) > 1 else ()
    return Uri(scheme, user, password, host, port, params, headers if qmark else None, text)


def _parse_tel(rest: str, text: str, where: str) -> Uri:
    pieces = rest.split(";")
    if not _TEL_NUMBER_RE.match(pieces[0]):
        raise SipError(400, f"{where}: bad tel number")
    params = _params(pieces[1:], where) if len(pieces) > 1 else ()
    return Uri("tel", rest, None, "", None, params, None, text)


def _dialish(text: str) -> bool:
    """Digits, separators and post-dial only, at least one digit, at most one '+'."""
    return (
        bool(text)
        and all(c in _DIAL_CHARS for c in text)
        and any(c in _DIGITS for c in text)
        and text.count("+") <= 1
    )


def dial_targets(uri: Uri) -> tuple[str, ...] | None:
    """The dial strings a URI asks to reach, primary first, or None when in doubt.

    The user part (sip/sips, with or without user=phone) or the telephone-subscriber (tel) is
    split at ';' before unescaping, so an escaped ';' stays part of the number, and each piece
    is unescaped exactly once. A global phone-context (RFC 3966 §5.1.5) is prefixed to a local
    number; a domain context cannot be read without doubt. A routing number (rn, RFC 4694) is
    screened as well, since the carrier may route to it.
    """
    if uri.scheme in ("sip", "sips"):
        if uri.user is None or uri.password is not None:
            return None
    elif uri.scheme != "tel":
        return None
    subscriber = uri.user
    if subscriber is None:
        return None
    parts = subscriber.split(";")
    number = unescape(parts[0])
    if number is None or not _dialish(number):
        return None
    targets = [number]
    for p in parts[1:]:
        raw_name, eq, raw_value = p.partition("=")
        name = unescape(raw_name)
        value = unescape(raw_value)
        if name is None or value is None:
            return None
        name = name.lower()
        if name == "phone-context":
            if number.lstrip().startswith("+") or not value.startswith("+"):
                return None
            if not _dialish(value[1:]) or any(c not in "0123456789-.()" for c in value[1:]):
                return None
            targets[0] = value + number
        elif name == "rn":
            if not eq or not _dialish(value):
                return None
            targets.append(value)
        elif name not in _NEUTRAL_USER_PARAMS:
            return None
    return tuple(targets)
