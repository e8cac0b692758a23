"""Every limit the SIP core enforces, with where the number comes from (STYLE.md rule 4)."""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_FORWARDS",
    "MAX_CONTENT_LENGTH",
    "MAX_CSEQ",
    "MAX_DIALOGS",
    "MAX_FORWARDS_LIMIT",
    "MAX_HEADERS",
    "MAX_HEADER_BLOCK_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_TRANSACTIONS",
    "MAX_URI_CHARS",
    "MAX_VIA_DEPTH",
    "SIP_VERSION",
]

SIP_VERSION = "SIP/2.0"  # RFC 3261 §7.1
# A UDP datagram carries at most 65,535 - 8 (UDP) - 20 (IPv4) octets (RFC 768, RFC 791); a SIP
# message on TCP is held to the same bound so one peer cannot make us buffer without limit.
# Anything bigger is answered 513 Message Too Large (RFC 3261 §21.5.14).
MAX_MESSAGE_BYTES = 65_507
# Header block bound for stream framing: the framer refuses a header block that has not ended by
# then (the same bound as a whole message: RFC 3261 sets none, this keeps buffering bounded).
MAX_HEADER_BLOCK_BYTES = MAX_MESSAGE_BYTES
MAX_CONTENT_LENGTH = MAX_MESSAGE_BYTES
# Header fields per message. A real INVITE carries 10-30; RFC 4475 longreq.dat has 40. Kamailio
# caps parsed headers similarly; 256 leaves ample room while bounding per-message work.
MAX_HEADERS = 256
# Via entries per message: each hop adds one (RFC 3261 §16.6 step 8) and Max-Forwards caps hops at
# 70 by default (§8.1.1.6), so more than this can only be a loop or an attack.
MAX_VIA_DEPTH = 70
# Max-Forwards is 0-255 (RFC 3261 §20.22 gives 1*DIGIT; every implementation caps at 255, and
# RFC 4475 §3.1.2.15 scalar02 expects a value above it to be rejected).
MAX_FORWARDS_LIMIT = 255
DEFAULT_MAX_FORWARDS = 70  # RFC 3261 §8.1.1.6 / §16.6 step 3
# CSeq sequence numbers are 32-bit and below 2**31 (RFC 3261 §8.1.1.5, §20.16).
MAX_CSEQ = 2**31 - 1
# A Request-URI longer than this is refused: RFC 4475 longreq has ~400 characters; no honest dial
# URI approaches this, and bounding it bounds URI parsing work.
MAX_URI_CHARS = 4096
# Bounds on the core's state so a flood cannot exhaust memory: beyond these, new INVITEs are
# answered 503 (RFC 3261 §21.5.4) instead of collapsing (the Kamailio anchor's "no overload
# control" trap). Completed transactions linger 32 s (Timer H/J = 64*T1, RFC 3261 §17): at
# 2,000 calls/s with ~3 transactions per call that is ~192,000.
MAX_TRANSACTIONS = 200_000
MAX_DIALOGS = 200_000
