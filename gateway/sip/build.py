"""Building what the proxy sends: responses, Via and Record-Route values, keys (RFC 3261 §16).

Pure helpers, kept apart from the proxy's decisions so `proxy.py` reads as policy.
"""

from __future__ import annotations

import hashlib
import ipaddress

from gateway.sip.headers import Via
from gateway.sip.message import Header, Message
from gateway.sip.uri import format_host

__all__ = [
    "MAGIC_COOKIE",
    "ack_for",
    "branch_material",
    "build_response",
    "cancel_for",
    "keyed_hash",
    "response_dest",
    "same_host",
    "stamp_via",
]

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7
_COPIED = frozenset({"via", "from", "call-id", "cseq"})  # §8.2.6.2, To handled apart


def keyed_hash(secret: bytes, text: str, size: int = 10) -> str:
    """A short keyed hash (hex): branch ids, To tags (§16.11: deterministic, not guessable)."""
    return hashlib.blake2s(
        text.encode("utf-8", "surrogateescape"), key=secret, digest_size=size
    ).hexdigest()


def branch_material(msg: Message, via: Via) -> str:
    """What identifies a request's transaction, method aside (§17.2.3).

    With the magic cookie: branch and sent-by. Without (RFC 2543, §17.2.3 last paragraphs):
    Request-URI, From tag, Call-ID, CSeq number and the top Via, so a CANCEL or an ACK lands on
    the same material as its INVITE.
    """
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        return f"b|{branch}|{via.sent_by.lower()}"
    from_tag = msg.from_().tag or ""
    vias = msg.via_values()
    return f"o|{msg.uri}|{from_tag}|{msg.call_id}|{msg.cseq}|{vias[0] if vias else ''}"


def same_host(a: str, b: str) -> bool:
    """Compare two hosts as addresses when both are IP literals, else case-insensitively."""
    if a == b:
        return True
    a, b = a.strip("[]").lower(), b.strip("[]").lower()
    if a == b:
        return True
    if ":" not in a and ":" not in b:
        return False  # two different IPv4 dotted quads or names: no other spelling is equal
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def stamp_via(value: str, via: Via, source: tuple[str, int]) -> str:
    """Add received/rport to a Via value as RFC 3261 §18.2.1 and RFC 3581 §4 ask."""
    host, port = source
    out = value
    rport = via.param("rport")
    if rport is not None:
        # RFC 3581 §4: fill in rport, and received even when the host matches.
        out = _set_param(out, "rport", str(port))
        out = _set_param(out, "received", host)
    elif not same_host(via.host, host):
        out = _set_param(out, "received", host)
    return out


def _set_param(value: str, name: str, param_value: str) -> str:
    parts = value.split(";")
    for i in range(1, len(parts)):
        if parts[i].split("=", 1)[0].strip(" \t").lower() == name:
            parts[i] = f"{name}={param_value}"
            return ";".join(parts)
    return f"{value};{name}={param_value}"


def response_dest(via: Via, transport: str, source: tuple[str, int]) -> tuple[str, str, int]:
    """Where responses to a request go (§18.2.2, RFC 3581 §4).

    Reliable transports answer on the connection the request came in on (the source); UDP
    answers the source address and port when rport was asked for, else the source address at
    the sent-by port (the received parameter's rule).
    """
    if transport != "udp" or via.param("rport") is not None:
        return (transport, source[0], source[1])
    return (transport, source[0], via.port if via.port is not None else 5060)


def via_dest(via: Via) -> tuple[str, str, int] | None:
    """Where a response goes by its Via alone (stateless forwarding, §18.2.2), or None."""
    transport = via.transport.lower()
    if transport not in ("udp", "tcp"):
        return None
    received = via.param("received")
    host = received if received else via.host
    rport = via.param("rport")
    if rport:
        if not rport.isdigit() or int(rport) > 65535:
            return None
        port = int(rport)
    else:
        port = via.port if via.port is not None else 5060
    return (transport, host.strip("[]"), port)


def build_response(
    request: Message,
    status: int,
    reason: str,
    to_tag: str | None,
    extra: list[Header] | None = None,
) -> Message:
    """A response to `request` (§8.2.6.2): Via, From, To (+tag), Call-ID, CSeq copied."""
    headers: list[Header] = []
    to_value = ""
    for h in request.headers:
        k = h[0]
        if k in _COPIED:
            headers.append(h)
        elif k == "to":
            to_value = h[2]
            if to_tag is not None and status > 100 and ";tag=" not in to_value.replace(" ", ""):
                to_value = f"{to_value};tag={to_tag}"
            headers.append((k, h[1], to_value))
    if extra:
        headers.extend(extra)
    resp = Message.response(status, reason, headers)
    resp.call_id, resp.cseq, resp.cseq_method = request.call_id, request.cseq, request.cseq_method
    return resp


def _copy_for(sent: Message, keys: tuple[str, ...]) -> list[Header]:
    """The top Via of what we sent, then the listed headers as they were sent."""
    headers: list[Header] = []
    for h in sent.headers:
        if h[0] == "via":
            headers.append((h[0], h[1], sent.via_values()[0]))
            break
    headers.extend(h for h in sent.headers if h[0] in keys)
    return headers


def ack_for(sent: Message, to_value: str) -> bytes:
    """ACK for a non-2xx final (§17.1.1.3): the INVITE's branch, Route and Request-URI; the
    To of the response (with its tag)."""
    headers = _copy_for(sent, ("from", "call-id", "route", "max-forwards"))
    headers.append(("to", "To", to_value))
    headers.append(("cseq", "CSeq", f"{sent.cseq} ACK"))
    return Message.request("ACK", sent.uri, headers).render()


def cancel_for(sent: Message) -> bytes:
    """CANCEL for a forwarded INVITE (§9.1): same branch, Request-URI, Route, From, To."""
    headers = _copy_for(sent, ("from", "to", "call-id", "route", "max-forwards"))
    headers.append(("cseq", "CSeq", f"{sent.cseq} CANCEL"))
    return Message.request("CANCEL", sent.uri, headers).render()


def via_value(transport: str, host: str, port: int, branch: str) -> str:
    return f"SIP/2.0/{transport.upper()} {format_host(host)}:{port};branch={branch};rport"


def record_route_value(host: str, port: int, transport: str) -> str:
    tparam = ";transport=tcp" if transport == "tcp" else ""
    return f"<sip:{format_host(host)}:{port}{tparam};lr>"
