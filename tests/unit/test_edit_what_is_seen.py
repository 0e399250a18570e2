"""What detection can see, redaction can act on: for generated form, text/plain, JSON and
multipart bodies, every field the extraction reports is either edited by a `strip` or
`replace` rule aimed at it, or the action says `applied: false` with a reason."""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shopguard.engine import location as loc
from shopguard.engine.extract import Field, extract
from shopguard.engine.fakes import stand_in
from shopguard.engine.findings import Finding
from shopguard.engine.redact import Outcome, redact
from shopguard.engine.request import PlainRequest
from shopguard.engine.settings import Config, Site, load_config
from tests.support.logschema import schema

URL = "https://www.shop.example/submit"
LOCATION = re.compile(schema()["$defs"]["location"]["pattern"])


def _config(action: str) -> Config:
    root = Path(tempfile.mkdtemp(prefix="shopguard-edit-"))
    (root / "sites").mkdir()
    (root / "sites" / "shop.yaml").write_text(
        f'hosts: ["*.shop.example"]\nfields:\n  device_id: {action}\n', encoding="utf-8"
    )
    return load_config(root, None)


SITES = {action: _config(action).sites[0] for action in ("strip", "replace")}

names = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=8
)
words = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=16
)
leaves = words | st.integers(min_value=-(10**12), max_value=10**12)
documents = st.recursive(
    st.dictionaries(names, leaves, min_size=1, max_size=4),
    lambda inner: (
        st.dictionaries(names, inner | leaves, min_size=1, max_size=4)
        | st.lists(inner | leaves, min_size=1, max_size=3)
    ),
    max_leaves=12,
)
pairs = st.lists(st.tuples(names, words), min_size=1, max_size=6)


def _form(items: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in items)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["form", "text-form", "json", "multipart", "text"]))
    if kind == "form":
        return "application/x-www-form-urlencoded", _form(draw(pairs)).encode()
    if kind == "text-form":  # what navigator.sendBeacon sends
        return "text/plain;charset=UTF-8", _form(draw(pairs)).encode()
    if kind == "json":
        return "application/json", json.dumps(draw(documents), ensure_ascii=False).encode()
    if kind == "text":
        return "text/plain", draw(words).encode()
    parts = []
    for name, value in draw(pairs):
        field = name.replace('"', "").replace("\\", "") or "f"
        parts.append(
            f'--b0undary\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n{value}\r\n'
        )
    body = "".join(parts) + "--b0undary--\r\n"
    return "multipart/form-data; boundary=b0undary", body.encode()


def _finding(found: Field) -> Finding:
    return Finding("device_id", found.location, "pattern", found.transform, 0.9, "***", "f")


def _apply(site: Site, request: PlainRequest, found: Field) -> Outcome:
    extraction = extract(request)
    assert extraction.body is not None
    return redact(
        site.policy,
        request,
        extraction.body,
        "www.shop.example",
        [_finding(found)],
        site=site.name,
        secret=b"s" * 32,
        enforce=True,
    )


def _values(request: PlainRequest) -> Counter[str]:
    return Counter(f.value for f in extract(request).fields)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies(), action=st.sampled_from(["strip", "replace"]))
@example(body=("text/plain", b"dGVzdHRlc3Q=="), action="strip")  # base64, not a form
@example(body=("application/json", b'{"a": {"b": "x1"}, "a.b": "y2"}'), action="strip")
@example(body=("application/json", b'{"a[0]": "x1", "a": ["y2"]}'), action="replace")
def test_every_field_seen_is_edited_or_says_why_not(body: tuple[str, bytes], action: str) -> None:
    content_type, data = body
    request = PlainRequest("POST", URL, [("content-type", content_type)], data)
    site = SITES[action]
    before = _values(request)
    for found in extract(request).fields:
        # every location follows the notation, and the log's schema takes it
        assert loc.parse(found.location) is not None
        assert LOCATION.fullmatch(found.location), found.location
        outcome = _apply(site, request, found)
        aimed = [a for a in outcome.actions if a.target == found.location]
        assert aimed, f"no action for {found.location} ({content_type})"
        (done,) = aimed
        if not done.applied:
            assert done.reason, f"{found.location}: not applied, and no reason given"
            continue
        assert outcome.changed, f"{found.location}: said applied, but nothing changed"
        if not found.value:
            continue  # a name alone (`?a&b=1`): it went, but an empty value is no evidence
        edited = PlainRequest(
            "POST", outcome.url, outcome.headers, data if outcome.body is None else outcome.body
        )
        after = _values(edited)
        if action == "replace" and _stand_in(found) is None:
            # sent several times under one name, and this value is none of its category:
            # the others were replaced (README: a stand-in for each of its values)
            assert _values_at(edited, found.location) != _values_at(request, found.location)
            continue
        assert after[found.value] < before[found.value], (
            f"{found.location}: {action} said applied, but the value still travels"
        )


def _stand_in(found: Field) -> str | None:
    return stand_in(
        found.value, "device_id", found.transform, site="shop", secret=b"s" * 32, region="CN"
    )


def _values_at(request: PlainRequest, location: str) -> list[str]:
    return [f.value for f in extract(request).fields if f.location == location]
