"""The location notation: building, parsing, escaping, masking (README: *Locations*)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shopguard.engine import location as loc
from shopguard.engine.location import (
    DOCUMENT,
    FRAGMENT,
    INDEX,
    MASKED,
    NAME,
    PART,
    Location,
    LocationError,
    Step,
)

names = st.text(max_size=12)  # lone surrogates too: JSON keys can hold them
previews = st.text(max_size=12)
later = st.one_of(
    names.map(lambda n: Step(NAME, n)),
    names.map(lambda n: Step(FRAGMENT, n)),
    st.integers(0, 10**6).map(lambda i: Step(INDEX, i)),
    st.just(Step(DOCUMENT)),
    st.text(min_size=1, max_size=12).map(lambda n: Step(PART, n)),
    st.integers(0, 99).map(lambda i: Step(PART, i)),
    st.tuples(st.sampled_from(["phone", "email"]), previews).map(
        lambda p: Step(MASKED, f"{p[0]}:{p[1]}")
    ),
)


@st.composite
def locations(draw: st.DrawFn) -> Location:
    kind = draw(st.sampled_from(sorted(loc.KINDS | loc.WHOLE)))
    if kind in loc.WHOLE:
        return Location(
            kind, tuple(draw(st.lists(later.filter(lambda s: s.kind != INDEX), max_size=3)))
        )
    if kind in loc.NUMBERED:
        first = Step(INDEX, draw(st.integers(0, 99)))
    elif kind in ("body", "ws"):
        first = Step(DOCUMENT)
    else:
        first = draw(st.one_of(names.map(lambda n: Step(NAME, n)), st.just(Step(DOCUMENT))))
    return Location(kind, (first, *draw(st.lists(later, max_size=6))))


@given(locations())
def test_parse_undoes_build(location: Location) -> None:
    assert loc.parse(loc.build(location)) == location


@pytest.mark.parametrize(
    ("text", "kind", "steps"),
    [
        ("query:spm", "query", [(NAME, "spm")]),
        ("cookie:cna", "cookie", [(NAME, "cna")]),
        ("path:2", "path", [(INDEX, 2)]),
        ("body.text", "body.text", []),
        (
            "query:data.$.shipTo.mobileNo",
            "query",
            [(NAME, "data"), (DOCUMENT, ""), (NAME, "shipTo"), (NAME, "mobileNo")],
        ),
        (
            "body:$.items[0].sku",
            "body",
            [(DOCUMENT, ""), (NAME, "items"), (INDEX, 0), (NAME, "sku")],
        ),
        ("header:referer.q", "header", [(NAME, "referer"), (NAME, "q")]),
        ("header:referer#k", "header", [(NAME, "referer"), (FRAGMENT, "k")]),
        ("body.form:$.a", "body.form", [(DOCUMENT, ""), (NAME, "a")]),
        ("body:$.a%2Eb", "body", [(DOCUMENT, ""), (NAME, "a.b")]),
        ("query:{phone:138****8000}", "query", [(MASKED, "phone:138****8000")]),
        ("header:user-agent/UTDID", "header", [(NAME, "user-agent"), (PART, "UTDID")]),
        ("header:user-agent/4", "header", [(NAME, "user-agent"), (PART, 4)]),
        ("cookie:t/%31", "cookie", [(NAME, "t"), (PART, "1")]),  # a part named "1"
        ("host:0", "host", [(INDEX, 0)]),
    ],
)
def test_the_notation_users_read_in_the_log(
    text: str, kind: str, steps: list[tuple[str, object]]
) -> None:
    parsed = loc.parse(text)
    assert parsed.kind == kind
    assert [(s.kind, s.value) for s in parsed.steps] == steps
    assert loc.build(parsed) == text


@pytest.mark.parametrize(
    ("name", "written"),
    [
        ("spm", "spm"),
        ("收货人", "收货人"),  # names in other scripts stay readable
        ("a.b", "a%2Eb"),
        ("x:y", "x%3Ay"),
        ("$", "%24"),
        ("a[0]", "a%5B0%5D"),
        ("u@h", "u%40h"),
        ("two words", "two%20words"),
        ("100%", "100%25"),
        ("{x}", "%7Bx%7D"),
        ("a/b", "a%2Fb"),
    ],
)
def test_reserved_characters_are_escaped(name: str, written: str) -> None:
    assert loc.escape(name) == written
    assert loc.unescape(written) == name
    assert loc.parse(loc.top("query", name)).field == name


def test_builders_match_what_extraction_writes() -> None:
    assert loc.member("query:", "spm") == "query:spm"
    assert loc.member("query:r", "mobile") == "query:r.mobile"
    assert loc.document("query:data") == "query:data.$"
    assert loc.document("body.form:") == "body.form:$"
    assert loc.item("body:$.items", 3) == "body:$.items[3]"
    assert loc.fragment_param("header:referer", "k") == "header:referer#k"


@pytest.mark.parametrize(
    "text", ["spm", "nokind:x", "query:a[x]", "query:a]b", "path:x", "query:{phone"]
)
def test_malformed_locations_are_refused(text: str) -> None:
    with pytest.raises(LocationError):
        loc.parse(text)


def test_innermost_name_and_segment() -> None:
    assert loc.innermost_name("cookie:cna") == "cna"
    assert loc.innermost_name("body:$.a.umid") == "umid"
    assert loc.innermost_name("query:data.$.items[0]") == "items"
    assert loc.innermost_name("body.text") == ""
    assert loc.segment_index("path:2") == 2
    assert loc.segment_index("path:2.$.a") == 2
    assert loc.segment_index("query:path") is None


def test_a_name_that_is_personal_data_is_written_masked() -> None:
    masks = {"13800138000": loc.masked("phone", "138****8000")}
    assert loc.with_masks("query:13800138000", masks) == "query:{phone:138****8000}"
    assert loc.with_masks("body:$.13800138000.city", masks) == "body:$.{phone:138****8000}.city"
    assert loc.with_masks("query:spm", masks) == "query:spm"  # other names stay as they are
    assert loc.with_masks("body:$.a[0]", masks) == "body:$.a[0]"
    assert loc.with_masks("request", masks) == "request"  # targets that are no location
    assert loc.with_masks("message", masks) == "message"


def test_what_a_text_body_holds_has_locations_too() -> None:
    parsed = loc.parse("body.text.mobile")
    assert (parsed.kind, parsed.steps) == ("body.text", (Step(NAME, "mobile"),))
    assert loc.build(parsed) == "body.text.mobile"
    assert loc.parse("ws.text.$.a").steps == (Step(DOCUMENT), Step(NAME, "a"))


def test_a_lone_surrogate_in_a_name_is_escaped_and_read_back() -> None:
    name = "mobile\ud800"
    written = loc.top("body.form", name)
    assert written == "body.form:mobile%ED%A0%80" and written.encode("utf-8")
    assert loc.parse(written).field == name


def test_a_part_named_by_a_digit_of_another_script_round_trips() -> None:
    """`¹` is a digit to `str.isdigit`, not to the grammar: it is a name, written as one."""
    from shopguard.engine.location import parse, part

    assert parse(part("body:$", "¹")).steps[-1].value == "¹"
