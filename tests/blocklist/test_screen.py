"""The normaliser against DESIGN.md's screening rules: evasions blocked, the rest allowed or
invalid, never-block first. Only Ofcom drama numbers are used."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocklist import (
    CheckResult,
    DialPlan,
    ListHolder,
    ListSnapshot,
    Screener,
    Verdict,
)
from blocklist.neverblock import UK_NEVER_BLOCK
from blocklist.screen import MAX_DIAL_CHARS

MOBILE = "+447700900123"
LONDON = "+442079460123"
LEEDS = "+441134960001"
DRAMA_1632 = "+441632960001"
BARRED = (MOBILE, LONDON, LEEDS, DRAMA_1632)


def screener(plan: DialPlan | None = None, barred: tuple[str, ...] = BARRED) -> Screener:
    return Screener(plan or DialPlan(), ListHolder(ListSnapshot.from_e164(barred, 1)))


# Every dial string here must be BLOCKED as the given barred number (site: London, outside line 9).
EVASIONS: list[tuple[str, str]] = [
    ("07700900123", MOBILE),
    ("+447700900123", MOBILE),
    ("447700900123", MOBILE),  # international without + or 00
    ("00447700900123", MOBILE),
    ("7700900123", MOBILE),  # national without the trunk 0
    ("+44 (0) 7700 900123", MOBILE),
    ("+44(0)7700900123", MOBILE),
    ("0044 0 7700 900123", MOBILE),
    ("00440 7700900123", MOBILE),
    ("44 (0)7700 900 123", MOBILE),  # international without prefix, with the (0)
    ("07700-900-123", MOBILE),
    ("07700.900.123", MOBILE),
    ("(07700) 900123", MOBILE),
    ("0 7 7 0 0 9 0 0 1 2 3", MOBILE),
    ("07700\t900123", MOBILE),
    ("07700/900123", MOBILE),
    # stacked dial prefixes, in any order and repeated
    ("9 07700 900123", MOBILE),
    ("907700900123", MOBILE),
    ("99 07700900123", MOBILE),
    ("141 07700 900123", MOBILE),
    ("1470 07700 900123", MOBILE),
    ("18001 07700 900123", MOBILE),
    ("18002 07700 900123", MOBILE),
    ("9 141 07700 900123", MOBILE),
    ("141 9 07700 900123", MOBILE),
    ("9 1470 141 18001 07700900123", MOBILE),
    ("141 1470 00 44 7700 900123", MOBILE),
    ("9 +44 7700 900123", MOBILE),
    ("141+447700900123", MOBILE),
    ("9 141 +44 (0) 7700 900123", MOBILE),
    ("18002 0044 0 7700 900123", MOBILE),
    ("1417700900123", MOBILE),  # 141 then national without trunk
    # post-dial parts
    ("07700900123,", MOBILE),
    ("07700900123,,1234", MOBILE),
    ("07700900123;", MOBILE),
    ("07700900123;1", MOBILE),
    ("07700900123p1234", MOBILE),
    ("07700900123P1234", MOBILE),
    ("07700900123w1234", MOBILE),
    ("07700900123W", MOBILE),
    ("07700900123#", MOBILE),
    ("07700900123*", MOBILE),
    ("07700900123;ext=1234", MOBILE),
    ("07700900123;EXT=1234", MOBILE),
    ("+44-7700-900123;ext=12", MOBILE),
    ("07700 900123 , 1 # 2", MOBILE),
    # overdialled digits after a barred number
    ("077009001234", MOBILE),
    ("07700900123999999", MOBILE),
    ("+4477009001230000", MOBILE),
    ("9 07700 900123 55", MOBILE),
    # local dialling with the site's area code (London 020)
    ("79460123", LONDON),
    ("7946 0123", LONDON),
    ("9 7946 0123", LONDON),
    ("141 79460123", LONDON),
    ("794601239", LONDON),  # overdialled local
    ("020 7946 0123", LONDON),
    ("+44 20 7946 0123", LONDON),
    ("2079460123", LONDON),
    ("0113 496 0001", LEEDS),
    ("01632 960001", DRAMA_1632),
    ("+44 (0)1632 960001", DRAMA_1632),
]


@pytest.mark.parametrize(("dialled", "barred"), EVASIONS)
def test_evasion_is_blocked(dialled: str, barred: str) -> None:
    result = screener().check(dialled)
    assert result.verdict is Verdict.BLOCKED, dialled
    assert result.matched_e164 == barred
    assert screener().screen(dialled) == "blocked"


@pytest.mark.parametrize(
    ("dialled", "barred", "plan"),
    [
        ("4960001", LEEDS, DialPlan(area_code="113")),  # local dialling in Leeds (7 digits)
        ("960001", DRAMA_1632, DialPlan(area_code="1632")),  # 6-digit local numbers
        ("8 960001", DRAMA_1632, DialPlan(area_code="1632", outside_line="8")),
        ("8 07700900123", MOBILE, DialPlan(outside_line="8")),
        ("07700900123", MOBILE, DialPlan(outside_line="")),
        ("0 07700900123", MOBILE, DialPlan(outside_line="0")),
        ("00447700900123", MOBILE, DialPlan(outside_line="0")),
    ],
)
def test_evasion_under_other_dial_plans(dialled: str, barred: str, plan: DialPlan) -> None:
    result = screener(plan).check(dialled)
    assert result == CheckResult(Verdict.BLOCKED, int(barred[1:]))


def test_foreign_barred_numbers() -> None:
    s = screener(barred=("+33123456789", "+390612345678", "+12025550123"))
    for dialled, e164 in [
        ("+33 1 23 45 67 89", "+33123456789"),
        ("+33 (0)1 23 45 67 89", "+33123456789"),  # French trunk written after the code
        ("0033 0 123456789", "+33123456789"),
        ("33123456789", "+33123456789"),
        ("+39 06 1234 5678", "+390612345678"),  # Italy keeps its leading 0
        ("0039 06 12345678", "+390612345678"),
        ("001 202 555 0123", "+12025550123"),
        ("9 141 00 1 (202) 555-0123", "+12025550123"),
        ("12025550123", "+12025550123"),
    ]:
        assert s.check(dialled).matched_e164 == e164, dialled


ALLOWED = [
    "07700900124",  # the neighbour of a barred number
    "+447700900124",
    "00447700900124",
    "9 07700 900124",
    "141 07700900124",
    "79460124",  # local, not barred
    "020 7946 0124",
    "+33 1 23 45 67 89",
    "07700 90012",  # underdialled: a shorter (9-digit) number, not the barred one
]


@pytest.mark.parametrize("dialled", ALLOWED)
def test_not_barred_is_allowed(dialled: str) -> None:
    assert screener().check(dialled) == CheckResult(Verdict.ALLOWED)
    assert screener().screen(dialled) == "allowed"


INVALID = [
    "",
    " ",
    "+",
    "++447700900123",
    "+44+7700900123",
    "0+447700900123",  # '+' after something that is not a dial prefix
    "00+447700900123",
    "+00447700900123",
    "+0 7700 900123",
    "tel:+447700900123",
    "sip:07700900123@example.invalid",
    "07700900123@example.invalid",
    "07700%39900123",  # escapes are the SIP layer's job, exactly once
    "07700 9OO 123",  # letters O for zeros
    "0770O900123",
    "07700900123;phone-context=+44",  # phone-context changes what the digits mean
    "7946 0123;phone-context=+44113",
    "07700900123;rn=+447700900999",
    "07700900123;isub=1",
    "07700900123;npdi",
    "07700900123;ext=12;foo=bar",
    "07700900123\n",
    "07700900123\r",
    "07700900123\x00",
    "*31#07700900123",
    "#31#07700900123",
    "p07700900123",
    ",07700900123",
    "9,07700900123",  # pause after the outside line: the carrier would get '9' only
    "1234",
    "9",
    "0",
    "00",
    "141",
    "+44",
    "+44 7",
    "0" * 20,
    "0" + "7" * (MAX_DIAL_CHARS + 1),
    "141" * 17 + "07700900123",  # more stacked prefixes than any honest dial
    "9" * 30,
    # Unicode: full-width, Arabic-Indic, superscript and other digits never pass (fail closed)
    "０７７００９００１２３",
    "07700９00123",
    "٠٧٧٠٠٩٠٠١٢٣",
    "07700900¹23",
    "+447700900123\u200b",  # zero-width space
    "\u202e07700900123",  # right-to-left override
    "07700\u00a0900123",  # no-break space
    "07700\u2010900123",  # Unicode hyphen
    "＋447700900123",
]


@pytest.mark.parametrize("dialled", INVALID)
def test_anything_else_is_invalid(dialled: str) -> None:
    s = screener()
    assert s.check(dialled) == CheckResult(Verdict.INVALID), repr(dialled)
    assert s.screen(dialled) == "invalid"


NEVER_BLOCK_DIALS = [
    *UK_NEVER_BLOCK,
    "9 999",
    "141 999",
    "9 112",
    "0800 1111",
    "+44 800 1111",
    "0044 800 1111",
    "9 0800 1111",
    "116 123",
    "999,",
]


@pytest.mark.parametrize("dialled", NEVER_BLOCK_DIALS)
def test_never_block_is_always_allowed(dialled: str) -> None:
    # Even a list that (wrongly) carries the helpline, plus barred numbers, allows it.
    s = screener(barred=(*BARRED, "+448001111"))
    assert s.check(dialled) == CheckResult(Verdict.ALLOWED)


def test_a_listed_never_block_number_never_blocks_any_reading() -> None:
    # Defence in depth: even if a list carries Childline (intake refuses it), no reading that
    # lands on it -- overdialled, or a speculative one -- is blocked because of it.
    s = screener(DialPlan(area_code="113"), barred=("+448001111",))
    for dialled in (
        "0800 11112",
        "0800111123",
        "+44800111123",
        "8001111",
        "9 8001111",
        "448001111",
    ):
        assert s.check(dialled) == CheckResult(Verdict.ALLOWED), dialled


def test_never_block_extra_from_the_dial_plan() -> None:
    plan = DialPlan(never_block_extra=("0113 496 0001",))
    s = screener(plan)
    assert s.check("0113 496 0001").verdict is Verdict.ALLOWED
    assert s.check("+44 113 496 0001").verdict is Verdict.ALLOWED
    assert s.never_block.matches_e164(LEEDS[1:])


def test_never_block_wins_over_a_barred_prefix_in_every_form() -> None:
    # An operator's never-block number whose first 12 digits are a barred number: rule 1 says
    # the never-block number is allowed, whichever way it is written (fast paths included).
    plan = DialPlan(never_block_extra=("+44 113 496 0999 1",))
    s = screener(plan, barred=("+441134960999",))
    for dialled in (
        "+4411349609991",
        "004411349609991",
        "011349609991",
        "0113 4960 9991",
        "+44 (0)113 4960 9991",
        "0044 0 113 4960 9991",
        "9 0044 0 113 4960 9991",
    ):
        assert s.check(dialled) == CheckResult(Verdict.ALLOWED), dialled
    assert s.check("+44113496099912").matched_e164 == "+441134960999"  # not the helpline


def test_speculative_helpline_reading_does_not_hide_a_barred_number() -> None:
    # In Leeds (7-digit local numbers) "800 1111" dialled locally is 0113 800 1111; reading it as
    # 0800 1111 without its trunk 0 is speculative and must not let the barred number through.
    plan = DialPlan(area_code="113")
    s = screener(plan, barred=("+441138001111",))
    assert s.check("8001111").matched_e164 == "+441138001111"
    assert s.check("0800 1111").verdict is Verdict.ALLOWED


def test_swap_is_seen_by_the_next_check() -> None:
    holder = ListHolder(ListSnapshot.empty())
    s = Screener(DialPlan(), holder)
    assert s.check("07700900123").verdict is Verdict.ALLOWED
    holder.swap(ListSnapshot.from_e164([MOBILE], 1))
    assert s.check("07700900123").verdict is Verdict.BLOCKED
    holder.swap(holder.current.with_changes([], [int(MOBILE[1:])], 2))
    assert s.check("07700900123").verdict is Verdict.ALLOWED


def test_per_snapshot_caches_never_hide_a_new_bar() -> None:
    # Screening caches which number heads a snapshot holds; a swap must start afresh.
    holder = ListHolder(ListSnapshot.from_e164([MOBILE], 1))
    s = Screener(DialPlan(), holder)
    dials = ["79460123", "9 7946 0123", "+44 20 7946 0123", "020 7946 0123", "2079460123"]
    assert all(s.check(d).verdict is Verdict.ALLOWED for d in dials)
    holder.swap(holder.current.with_changes([int(LONDON[1:])], [], 2))
    assert all(s.check(d).matched_e164 == LONDON for d in dials)
    holder.swap(holder.current.with_changes([], [int(LONDON[1:])], 3))
    assert all(s.check(d).verdict is Verdict.ALLOWED for d in dials)


def test_empty_list_still_tells_invalid_from_allowed() -> None:
    s = Screener(DialPlan(), ListHolder(ListSnapshot.empty()))
    assert s.check("07700900123").verdict is Verdict.ALLOWED
    assert s.check("1234").verdict is Verdict.INVALID


# The fast paths must agree exactly with the general path they shortcut.
@settings(deadline=None, max_examples=250)
@given(
    st.one_of(
        st.text(alphabet="0123456789", min_size=1, max_size=20),
        st.builds("".join, st.lists(st.sampled_from(["0", "00", "44", "440", "9", "141", "7700"]))),
        st.builds(
            lambda head, tail: head + tail,
            st.sampled_from(
                ["90", "9", "99", "900", "9090", "9141", "09", "1410", "14700", "180010", "1418"]
            ),
            st.text(alphabet="0123456789", min_size=0, max_size=14),
        ),
    )
    .map(lambda d: d[:40])  # every form below stays within MAX_DIAL_CHARS
    .filter(bool),
    st.sampled_from(["20", "", "113"]),
    st.sampled_from(["9", "90", "0", "", "1", "14"]),
)
def test_fast_path_agrees_with_general_path(digits: str, area: str, outside_line: str) -> None:
    assert_paths_agree(digits, area, outside_line)


@pytest.mark.parametrize(
    "digits",
    [
        "907700900123",
        "914107700900123",
        "99141147007700900123",
        "1414107700900123",
        "18001914107946012345",
        "1470180020113496000",
        "9141079460123",
        "914100447700900123",
        "9908001111",  # a never-block dial behind two prefixes: the general path allows it
        "1419908001111",
        "907700900124",  # a speculative reading exactly as long as a barred number
        "900447700900124",  # 9 00...: "900..." read as +90 with its trunk 0 cut
        "4407700900124",  # +44 (0)...: read as written too, where the list has such an entry
    ],
)
@pytest.mark.parametrize("area", ["20", ""])
def test_stacked_prefix_path_agrees_with_general_path(digits: str, area: str) -> None:
    assert_paths_agree(digits, area, "9")


@pytest.mark.parametrize(
    ("outside_line", "digits"),
    [
        ("90", "9007700900123"),
        ("1", "107700900124"),
        ("14", "14107700900124"),
        ("18", "1807700900124"),  # the outside line and the trunk, but also 18001 / 18002 ...
        ("18", "1800107700900124"),  # ... so here two prefixes could apply
        ("18", "1800207700900124"),
        ("147", "14707700900124"),  # 147 then 0..., or 1470 then 7...: the general path's search
    ],
)
def test_outside_line_path_agrees_with_general_path(outside_line: str, digits: str) -> None:
    assert_paths_agree(digits, "20", outside_line)


def test_one_screener_agrees_on_every_stack_of_two_prefixes() -> None:
    # One screener sees every stack in turn, twice, so its caches (the per-screener prefix
    # steps, the per-snapshot readings) are filled by other stacks before they answer: they must
    # never answer for a stack that starts with other digits. The barred numbers are readings
    # of the national number and of it without its trunk (local, national, after 1470 or 141).
    national = "07700900124"
    s = screener(barred=(*BARRED, "+442077009001", "+441470770090", "+441410770090"))
    stacks = ["", "9", "141", "1470", "18001", "18002", "14", "147", "1800"]
    dials = [a + b + tail for a in stacks for b in stacks for tail in (national, national[1:])]
    for dialled in dials + dials:
        general = s._check_parsed(None, dialled)
        assert s.check(dialled) == s._check_py(dialled) == general, dialled


def assert_paths_agree(digits: str, area: str, outside_line: str) -> None:
    plan = DialPlan(area_code=area, outside_line=outside_line)
    # Bar, one at a time, each number a reading of the digits (with up to 5 leading digits
    # stripped) lands on, so both paths meet hits through each kind of reading, not only misses.
    readings = [
        "+" + form[:12]
        for k in range(6)
        for form in (
            "44" + area + digits[k:],
            "44" + digits[k:],
            digits[k:],
            "44" + digits[k + 1 :],
            # international without '+' or '00', with a trunk digit after an n-digit code
            *(digits[k : k + n] + digits[k + n + 1 :] for n in (1, 2, 3)),
        )
    ]
    # Dials that share all but one of the first six digits: screened first, they fill the
    # per-snapshot caches, which must never answer for a dial that starts differently.
    neighbours = [
        digits[:i] + str((int(digits[i]) + 1) % 10) + digits[i + 1 :]
        for i in range(min(6, len(digits)))
    ]
    spaced = " ".join(digits)
    for barred in [None, *dict.fromkeys(readings)]:
        extra = (barred,) if barred and barred[1:2] not in ("", "0") and len(barred) > 7 else ()
        s = screener(plan, barred=(*BARRED, *extra, "+448001111"))
        for neighbour in neighbours:
            s.check(neighbour)
        # check (the C fast path, else Python), _check_py (the Python fast paths, the reference
        # the C code transcribes) and the general path must all agree.
        for dialled, general in (
            (digits, s._check_parsed(None, digits)),
            ("+" + digits, s._check_parsed("", digits)),
            ("00" + digits, s._check_parsed(None, "00" + digits)),
        ):
            assert s.check(dialled) == s._check_py(dialled) == general, dialled
        if len(spaced) + 2 <= MAX_DIAL_CHARS:
            assert s.check(digits) == s.check(spaced)
            assert s.check("+" + digits) == s.check("+ " + spaced)


# Any garbage gets a verdict and never an exception (the gateway's fuzz invariant).
@settings(deadline=None, max_examples=300)
@given(st.text(max_size=80))
def test_any_string_gets_a_verdict(dialled: str) -> None:
    assert screener().check(dialled).verdict in set(Verdict)


@settings(deadline=None, max_examples=200)
@given(st.text(alphabet="0123456789+ -.()/,;pw#*ext=", max_size=40))
def test_dial_alphabet_gets_a_verdict(dialled: str) -> None:
    result = screener().check(dialled)
    assert (result.verdict is Verdict.BLOCKED) == (result.matched is not None)
