"""The C fast path (`blocklist._native.FastPath`) against the Python screener it transcribes.

`Screener.check` asks the C fast path first and takes its answer when it gives one; the Python
`_check_py` is the reference. These tests generate dial strings (digits, '+', dial prefixes,
trunk and international prefixes, separators, post-dial parts, other characters) over lists with
and without overlays, with never-block and trunk-kept entries, under several dial plans, and
require that every answer the fast path gives is exactly `_check_py`'s. They also require that it
does answer the forms it exists for, so that a fast path that never decides fails here too.
"""

from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blocklist import DialPlan, ListHolder, ListSnapshot, Screener, Verdict
from blocklist._native import FastPath

MOBILE = 447700900123
LONDON = 442079460456
SHORT = 44113496000  # 11 digits: an overdial prefix of "0113 496 0000..."
TRUNK_KEPT = 440207946099  # "+44 (0)20 7946 099" as listed with its trunk (12 digits)
NEVER = 44116123  # 116 123 (Samaritans) wrongly carried by a list
FOREIGN = 33612345678
BARRED = (MOBILE, LONDON, SHORT, FOREIGN, 447700900999, 442079460000)

PLANS = {
    "london-9": DialPlan(),
    "leeds-no-line": DialPlan(area_code="113", outside_line=""),
    "outside-line-0": DialPlan(outside_line="0"),  # the outside line starts like the trunk
    "outside-line-141": DialPlan(outside_line="141"),  # the outside line is a dial prefix
    "outside-line-14": DialPlan(outside_line="14"),  # two prefixes apply to "141..."
    "no-area": DialPlan(area_code=""),
    "italy": DialPlan(country="IT", area_code="", outside_line="9"),  # no trunk prefix
    "us": DialPlan(country="US", area_code="212", outside_line="9"),  # trunk 1, intl 011
}


def snapshots() -> dict[str, ListSnapshot]:
    compact = ListSnapshot.from_numbers(BARRED, 1)
    return {
        "compact": compact,
        "overlay": compact.apply([447700900555, 33612340000], [MOBILE, SHORT], 2),
        "never-listed": ListSnapshot.from_numbers((*BARRED, NEVER), 1),
        "trunk-kept": ListSnapshot.from_numbers((*BARRED, TRUNK_KEPT), 1),
        "empty": ListSnapshot.from_numbers((), 1),
    }


@functools.cache
def screener(plan: str, snap: str) -> Screener:
    return Screener(PLANS[plan], ListHolder(snapshots()[snap]))


def assert_agrees(s: Screener, dialled: str) -> object:
    # Twice: the first Python check may fill the snapshot's guess cache the fast path reads.
    for _ in range(2):
        reference = s._check_py(dialled)
        fast = s._tables.fast(dialled)
        assert fast is None or (type(fast), fast) == (type(reference), reference), dialled
        assert s.check(dialled) == reference, dialled
    return fast


PIECES = st.sampled_from(
    [
        "0", "00", "9", "90", "141", "1470", "18001", "+", "44", "440", "33", "1", "011",
        "7700900123", "7700900999", "20 7946 0456", "2079460456", "1134960001", "116123",
        "7946", "999", " ", "-", ".", "(", ")", "/", "\t", "(0)", ";ext=12", "p", "w", ",",
        "#", "*", "x", "０", "\u00a0", ";phone-context=+44",
    ]
)  # fmt: skip
DIALS = st.lists(PIECES, min_size=1, max_size=8).map("".join) | st.text(
    alphabet="0123456789+ -()", max_size=30
)


@pytest.mark.parametrize("snap", sorted(snapshots()))
@pytest.mark.parametrize("plan", sorted(PLANS))
@given(dialled=DIALS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_fast_answer_is_the_python_answer(plan: str, snap: str, dialled: str) -> None:
    assert_agrees(screener(plan, snap), dialled)


COMMON = [
    ("07700 900123", MOBILE),
    ("07700900123", MOBILE),
    ("+447700900123", MOBILE),
    ("00447700900123", MOBILE),
    ("+44 7700 900123", MOBILE),
    ("020 7946 0456", LONDON),
    ("(020) 7946-0456", LONDON),
    ("9 07700 900123", MOBILE),
    ("907700900123", MOBILE),
    ("9 0044 7700 900123", MOBILE),
    ("0113 496 0001", SHORT),  # overdialled: the 11-digit entry is a prefix
    ("0033612345678", FOREIGN),  # 00 + another country's code: Python decides
    ("07700 900124", None),
    ("+447700900124", None),
    ("9 07700 900124", None),
    ("141 07700 900123", MOBILE),
    ("9 141 07700 900123", MOBILE),
    ("141 9 1470 07700 900123", MOBILE),
    ("18001 +44 7700 900123", MOBILE),  # '+' after a prefix: Python's parser decides
    ("1470 07700 900124", None),
]


@pytest.mark.parametrize(("dialled", "barred"), COMMON)
def test_common_forms_agree_and_are_decided_in_c(dialled: str, barred: int | None) -> None:
    s = Screener(DialPlan(), ListHolder(ListSnapshot.from_numbers(BARRED, 1)))
    fast = assert_agrees(s, dialled)
    expected = (Verdict.ALLOWED, None) if barred is None else (Verdict.BLOCKED, barred)
    assert tuple(s.check(dialled)) == expected
    if dialled.startswith(("0033", "18001 +")):
        assert fast is None  # not the fast path's: another country, '+' after a prefix
    else:
        assert fast is not None, f"{dialled!r} should be decided by the C fast path"


def test_overlay_never_block_and_trunk_kept_entries_are_honoured() -> None:
    snaps = snapshots()
    plan = DialPlan()
    overlay = Screener(plan, ListHolder(snaps["overlay"]))
    # Lifted in the overlay: allowed, decided in C.
    assert overlay._tables.fast("07700 900123") == overlay._check_py("07700 900123")
    assert overlay.check("07700 900123").verdict is Verdict.ALLOWED
    assert overlay.check("0113 496 0001").verdict is Verdict.ALLOWED
    # Added in the overlay: blocked, decided in C.
    assert overlay._tables.fast("07700900555") is not None
    assert tuple(overlay.check("07700900555")) == (Verdict.BLOCKED, 447700900555)
    # A never-block number a list carries is still never blocked.
    never = Screener(plan, ListHolder(snaps["never-listed"]))
    assert never.check("116123").verdict is Verdict.ALLOWED
    # A trunk-kept entry: "+44 (0)20 ..." is left to Python, which reads it both ways.
    kept = Screener(plan, ListHolder(snaps["trunk-kept"]))
    assert kept._tables.fast("+44 (0)20 7946 099") is None
    assert tuple(kept.check("+44 (0)20 7946 099")) == (Verdict.BLOCKED, TRUNK_KEPT)


def test_a_swapped_snapshot_is_screened_against_the_new_list() -> None:
    holder = ListHolder(ListSnapshot.from_numbers(BARRED, 1))
    s = Screener(DialPlan(), holder)
    assert s.check("07700900123").verdict is Verdict.BLOCKED
    holder.swap(ListSnapshot.from_numbers([447700900124], 2))
    # The old tables (and their fast path) are never asked about the new snapshot.
    assert s.check("07700900123").verdict is Verdict.ALLOWED
    assert tuple(s.check("07700900124")) == (Verdict.BLOCKED, 447700900124)
    assert s._tables.snapshot is holder.current


# A London plan's FastPath over an empty Python set, for tests that build one by hand.
PLAIN: dict[str, object] = dict(
    cc="44", trunk="0", intl="00", outside_line="9", outside_trunk="90",
    prefixes=("9", "141"), max_variants=16, separators=" ", never_long=8, max_dial=64,
    min_total=9, totals=(12,), base=set(), added=frozenset(), removed=frozenset(),
    never_ints=frozenset(), never_listed=False, trunk_listed=False, guesses={},
    no_guesses=None, guess_digits=6, allowed=None, result_type=tuple, blocked=None,
)  # fmt: skip


def test_the_set_baseline_runs_the_same_fast_path() -> None:
    # Any container as the base: the bench's "same normaliser + Python set" baseline.
    s = Screener(DialPlan(), ListHolder(ListSnapshot.from_numbers(BARRED, 1)))
    t = s._tables
    fast = FastPath(**{
        **PLAIN, "separators": " -.()/\t", "never_long": s._never_long, "min_total": t.own[0],
        "totals": t.own[1], "base": set(BARRED), "guesses": {}, "no_guesses": object(),
        "allowed": "allowed", "blocked": "blocked",
    })  # type: ignore[arg-type]  # fmt: skip
    assert fast.check("07700 900123") == ("blocked", MOBILE)
    assert fast.check("07700 900124") == "allowed"
    assert fast.check("9 07700 900124") is None  # the guess cache says nothing yet
    assert fast.check("141 9 07700 900123") == ("blocked", MOBILE)


def test_construction_refuses_what_it_cannot_read() -> None:
    kwargs = PLAIN
    FastPath(**kwargs)  # type: ignore[arg-type]
    for bad, message in (
        ({"max_dial": 65}, "max_dial"),
        ({"cc": "4a"}, "not digits"),
        ({"outside_line": "9" * 17}, "longer than"),
        ({"separators": " 1"}, "separator"),
        ({"totals": (12, 11)}, "ascending"),
        ({"totals": (20,)}, "ascending"),
        ({"prefixes": ("9", "1x")}, "not digits"),
        ({"prefixes": ("9", "")}, "not digits"),
        ({"prefixes": ("9",) * 17}, "more than 16"),
        ({"max_variants": 0}, "max_variants"),
        ({"guess_digits": 7}, "guess_digits"),
    ):
        with pytest.raises(ValueError, match=message):
            FastPath(**{**kwargs, **bad})  # type: ignore[arg-type]


def test_a_plan_the_fast_path_cannot_read_falls_back_to_python() -> None:
    # An outside line longer than the C code reads (16 digits): every dial takes the Python
    # path, with the same verdicts.
    plan = DialPlan(outside_line="9" * 17)
    s = Screener(plan, ListHolder(ListSnapshot.from_numbers(BARRED, 1)))
    assert s._tables.fast("07700900123") is None
    assert tuple(s.check("07700 900123")) == (Verdict.BLOCKED, MOBILE)
    assert tuple(s.check("9" * 17 + "07700900123")) == (Verdict.BLOCKED, MOBILE)
    assert s.check("07700 900124").verdict is Verdict.ALLOWED


@given(dialled=st.text(max_size=90))
@settings(max_examples=400, deadline=None)
def test_any_text_gets_the_python_answer(dialled: str) -> None:
    # Any text at all, longer than MAX_DIAL_CHARS and beyond ASCII included: never a crash,
    # and the fast path either answers as Python does or leaves it to Python.
    assert_agrees(screener("london-9", "overlay"), dialled)
