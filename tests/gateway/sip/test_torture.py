"""RFC 4475 and RFC 5118 torture messages, read from ../shared/sip-torture (never copied here).

Every message goes through the parser and through a ProxyCore as if the PBX sent it. The
property that matters most: nothing reaches the trunk unless its target was screened allowed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.sip import Screened, SipError, parse_message
from tests.gateway.sip.harness import TRUNK, Harness

REPO = Path(__file__).resolve().parents[3]
TORTURE = REPO.parent / "shared" / "sip-torture"
MANIFEST = TORTURE / "manifest.json"


def _manifest() -> dict[str, str]:
    if not MANIFEST.is_file():
        return {}
    data: dict[str, str] = json.loads(MANIFEST.read_text(encoding="utf-8"))
    return data


CASES = _manifest()
needs_corpus = pytest.mark.skipif(
    not CASES, reason=f"torture corpus not found at {TORTURE} (../shared/sip-torture)"
)

# RFC 4475 §3.3 (application), §3.1.2 (invalid) and RFC 5118: the answer the RFC asks for.
EXPECTED_STATUS = {
    "rfc4475/zeromf.dat": 483,  # §3.3.5 Max-Forwards 0
    "rfc4475/bext01.dat": 420,  # §3.3.7 unknown Proxy-Require
    "rfc4475/unkscm.dat": 416,  # §3.3.8 unknown Request-URI scheme
    "rfc4475/novelsc.dat": 416,  # §3.3.10
    "rfc4475/insuf.dat": 400,  # §3.3.1 missing required headers
    "rfc4475/multi01.dat": 400,  # §3.3.4 multiple single-valued headers
    "rfc4475/mcl01.dat": 400,  # §3.3.6 multiple Content-Length
    "rfc4475/badvers.dat": 505,  # §3.1.2.18 unknown protocol version
    "rfc4475/ncl.dat": 400,  # §3.1.2.2 negative Content-Length
    "rfc4475/clerr.dat": 400,  # §3.1.2.1 Content-Length beyond the datagram
    "rfc4475/scalar02.dat": 400,  # §3.1.2.3 overlarge values
    "rfc4475/quotbal.dat": 400,  # §3.1.2.4 unbalanced quotes
    "rfc4475/ltgtruri.dat": 400,  # §3.1.2.5 <> around the Request-URI
    "rfc4475/lwsruri.dat": 400,  # §3.1.2.6 LWS in the Request-URI
    "rfc4475/lwsstart.dat": 400,  # §3.1.2.7 more than one SP in the request line
    "rfc4475/trws.dat": 400,  # §3.1.2.8 trailing whitespace on the request line
    "rfc4475/escruri.dat": 400,  # §3.1.2.9 escaped headers in the Request-URI
    "rfc4475/baddate.dat": 400,  # §3.1.2.10 Date not in GMT
    "rfc4475/regbadct.dat": 400,  # §3.1.2.11 Contact with URI headers outside <>
    "rfc4475/badaspec.dat": 400,  # §3.1.2.12 LWS inside <>
    "rfc4475/baddn.dat": 400,  # §3.1.2.13 unquoted display name with a comma
    "rfc4475/badinv01.dat": 400,  # §3.1.2.14 empty Via/Contact elements
    "rfc4475/mismatch01.dat": 400,  # §3.1.2.16 CSeq method differs
    "rfc4475/mismatch02.dat": 400,  # §3.1.2.17
    "rfc5118/ipv6-bad.dat": 400,  # RFC 5118 §4.1 IPv6 without brackets
    "rfc5118/ipv6-bug-abnf-3-colons.dat": 400,  # RFC 5118 §4.8
    "rfc5118/via-received-param-no-delim.dat": 200,  # OPTIONS to us (no user part)
}
RFC5118_BAD = {"rfc5118/ipv6-bad.dat", "rfc5118/ipv6-bug-abnf-3-colons.dat"}
# Responses in the corpus: there is nothing to answer, and no transaction to relay them on.
RESPONSES = {"rfc4475/bigcode.dat", "rfc4475/scalarlg.dat", "rfc4475/bcast.dat",
             "rfc4475/noreason.dat", "rfc4475/unreason.dat"}  # fmt: skip


def _data(name: str) -> bytes:
    return (TORTURE / name).read_bytes()


def _run(name: str) -> Harness:
    h = Harness()
    h.pbx_send(_data(name))
    return h


def _answers(h: Harness) -> list[int]:
    return [int(o.data[8:11]) for o in h.raw if o.data.startswith(b"SIP/2.0 ")]


@needs_corpus
def test_manifest_lists_what_the_readme_promises() -> None:
    assert len([n for n in CASES if n.startswith("rfc4475/")]) == 49
    assert len([n for n in CASES if n.startswith("rfc5118/")]) == 12
    assert all((TORTURE / n).is_file() for n in CASES)


@needs_corpus
@pytest.mark.parametrize("name", sorted(CASES))
def test_nothing_unscreened_reaches_the_trunk_and_nothing_crashes(name: str) -> None:
    h = _run(name)
    allowed = {
        e.call_id for e in h.all_events if isinstance(e, Screened) and e.verdict == "allowed"
    }
    for out in h.raw:
        if out.dest == TRUNK:
            assert parse_message(out.data).call_id in allowed
    assert all(out.dest != TRUNK for out in h.raw), "no torture message has a dialable target"


@needs_corpus
@pytest.mark.parametrize("name", sorted(n for n, g in CASES.items() if g == "valid"))
def test_valid_messages_parse_and_are_not_rejected_as_malformed(name: str) -> None:
    msg = parse_message(_data(name))
    assert msg.call_id
    if msg.is_request:
        msg.top_via()
        msg.from_()
        msg.to()
        answers = _answers(_run(name))
        assert answers and all(s not in (400, 505) for s in answers), answers


@needs_corpus
@pytest.mark.parametrize(
    "name", sorted(n for n, g in CASES.items() if g == "invalid" and n not in RESPONSES)
)
def test_invalid_requests_get_400_and_are_never_forwarded(name: str) -> None:
    h = _run(name)
    assert h.to_trunk == []
    assert _answers(h) == [EXPECTED_STATUS[name]]


@needs_corpus
@pytest.mark.parametrize("name", sorted(RESPONSES))
def test_responses_without_a_transaction_are_dropped(name: str) -> None:
    h = _run(name)
    assert h.raw == []


@needs_corpus
@pytest.mark.parametrize("name", sorted(n for n in EXPECTED_STATUS if CASES.get(n) != "invalid"))
def test_application_answers(name: str) -> None:
    assert _answers(_run(name)) == [EXPECTED_STATUS[name]]


@needs_corpus
@pytest.mark.parametrize(
    "name", sorted(n for n, g in CASES.items() if g == "rfc5118" and n not in RFC5118_BAD)
)
def test_rfc5118_good_ipv6_references_parse(name: str) -> None:
    msg = parse_message(_data(name))
    msg.top_via()
    answers = _answers(_run(name))
    assert answers and 400 not in answers


@needs_corpus
def test_broken_branch_is_a_2543_transaction_and_retransmissions_match() -> None:
    # RFC 4475 §3.2.1: "z9hG4bK" alone is not an RFC 3261 branch; matching falls back to §17.2.3.
    h = Harness()
    h.pbx_send(_data("rfc4475/badbranch.dat"))
    h.pbx_send(_data("rfc4475/badbranch.dat"))
    answers = _answers(h)
    assert len(answers) == 2 and answers[0] == answers[1]
    assert h.screened == []  # "user" is no dial string: refused without asking the screen


@needs_corpus
def test_dblreq_takes_the_first_request_only() -> None:
    msg = parse_message(_data("rfc4475/dblreq.dat"))
    assert msg.body == b"" and msg.method == "REGISTER"


@needs_corpus
def test_escapes_are_decoded_exactly_once() -> None:
    from gateway.sip import dial_targets, parse_uri

    msg = parse_message(_data("rfc4475/esc01.dat"))
    uri = parse_uri(msg.uri)
    assert uri.user == "sips%3Auser%40example.com" and dial_targets(uri) is None


def _frame(chunks: list[bytes]) -> tuple[list[bytes], int | None]:
    from gateway.sip import StreamFramer

    framer = StreamFramer()
    out: list[bytes] = []
    try:
        for c in chunks:
            out.extend(framer.feed(c))
        out.extend(framer.feed(b""))  # an error found after good messages surfaces here
    except SipError as e:
        return out, e.status
    return out, None


@needs_corpus
@pytest.mark.parametrize("name", sorted(CASES))
def test_stream_framing_does_not_depend_on_how_bytes_arrive(name: str) -> None:
    data = _data(name)
    whole = _frame([data])
    assert _frame([data[i : i + 1] for i in range(len(data))]) == whole
    assert _frame([data[:7], data[7:300], data[300:]]) == whole
    for m in whole[0]:
        try:
            parse_message(m, framed=True)
        except SipError as e:
            assert 400 <= e.status < 600
