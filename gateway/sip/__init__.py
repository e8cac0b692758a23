"""upcs gateway/sip: a sans-I/O SIP core (no sockets, no clock reads, stdlib only).

Bytes and time in, bytes and events out: `ProxyCore.receive(data, transport, source, now)`,
`handle_timer(now)`, then `outgoing()`, `events()` and `next_timer()`. Screening is injected as
`screen(dialled) -> "allowed" | "blocked" | "invalid"`.
"""

from gateway.sip.config import DEFAULT_ALLOW_FROM, Outgoing, ProxyConfig
from gateway.sip.errors import SipError
from gateway.sip.events import (
    Event,
    MessageReceived,
    MessageSent,
    ParseFailed,
    Refused,
    Screened,
    TransactionTimedOut,
)
from gateway.sip.framer import StreamFramer
from gateway.sip.message import Message, parse_message
from gateway.sip.proxy import ProxyCore
from gateway.sip.uri import Uri, dial_targets, parse_uri

__all__ = [
    "DEFAULT_ALLOW_FROM",
    "Event",
    "Message",
    "MessageReceived",
    "MessageSent",
    "Outgoing",
    "ParseFailed",
    "ProxyConfig",
    "ProxyCore",
    "Refused",
    "Screened",
    "SipError",
    "StreamFramer",
    "TransactionTimedOut",
    "Uri",
    "dial_targets",
    "parse_message",
    "parse_uri",
]
