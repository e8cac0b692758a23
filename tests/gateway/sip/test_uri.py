"""URIs and the dial strings they carry (RFC 3261 §19.1, RFC 3966, DESIGN.md rule 6)."""

from __future__ import annotations

import pytest

from gateway.sip import SipError, dial_targets, parse_uri
from gateway.sip.uri import unescape


@pytest.mark.parametrize(
    ("uri", "targets"),
    [
        ("sip:07700900123@gw", ("07700900123",)),
        ("sip:+447700900123@gw;user=phone", ("+447700900123",)),
        ("sips:%2B447700900123@gw:5061", ("+447700900123",)),
        ("sip:9%2044%207700%20900123@gw", ("9 44 7700 900123",)),
        ("tel:+44-20-7946-0123", ("+44-20-7946-0123",)),
        ("tel:+44(0)20.7946.0123;ext=12", ("+44(0)20.7946.0123",)),
        ("tel:79460123;phone-context=+44-20", ("+44-2079460123",)),
        ("sip:79460123;phone-context=+4420@gw;user=phone", ("+442079460123",)),
        (
            "sip:+447700900123;npdi;rn=+447700900666@gw;user=phone",
            ("+447700900123", "+447700900666"),
        ),
        ("sip:07700900123;isub=12@gw", ("07700900123",)),
        ("sip:*21%23@gw", ("*21#",)),
    ],
)
def test_dial_targets(uri: str, targets: tuple[str, ...]) -> None:
    assert dial_targets(parse_uri(uri)) == targets


@pytest.mark.parametrize(
    "uri",
    [
        "sip:gw.example.com",  # no user part
        "sip:alice@gw",  # not a number
        "sip:0770090O123@gw",  # a letter O among digits
        "sip:%2530770@gw",  # %25 decodes once to '%', which is no digit
        "sip:07700900123:secret@gw",  # a password: nobody dials that
        "tel:79460123;phone-context=example.com",  # a domain context: doubt
        "tel:+447700900123;phone-context=+44",  # a global number may not have a context
        "sip:07700900123;foo=bar@gw",  # an unknown user parameter
        "sip:07700900123;rn=abc@gw",
        "sip:%EF%BC%90%EF%BC%97@gw",  # full-width digits
        "mailto:someone@example.com",
        "tel:++44",
    ],
)
def test_doubtful_uris_give_no_dial_string(uri: str) -> None:
    try:
        parsed = parse_uri(uri)
    except SipError:
        return
    assert dial_targets(parsed) is None


def test_escapes_are_decoded_exactly_once() -> None:
    assert unescape("%252B44") == "%2B44"
    assert unescape("%2B44") == "+44"
    assert unescape("%2") is None and unescape("%zz") is None and unescape("%ff") is None


@pytest.mark.parametrize(
    "uri",
    [
        "sip:a@b@c",
        "sip:user@",
        "sip:user@host:70000",
        "sip:user@[2001:db8:::1]",
        "sip:2001:db8::10",
        "sip:us er@h",
        "sip:u@h;=x",
        "sip:u@h?x=<y>",
        "nocolon",
        "tel:+44 20",
    ],
)
def test_malformed_uris_are_400(uri: str) -> None:
    with pytest.raises(SipError) as info:
        parse_uri(uri)
    assert info.value.status == 400


def test_uri_parts() -> None:
    u = parse_uri("sips:alice;x=1@[2001:db8::1]:5061;transport=tcp;lr?subject=hi")
    assert (u.scheme, u.user, u.host, u.port) == ("sips", "alice;x=1", "[2001:db8::1]", 5061)
    assert u.param("transport") == "tcp" and u.param("lr") == "" and u.headers == "subject=hi"
    opaque = parse_uri("isbn:2983792873")
    assert opaque.scheme == "isbn" and opaque.user is None
