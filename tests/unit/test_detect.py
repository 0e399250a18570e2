"""Detection as a whole: findings format, trackers and linking, confidence, fingerprints."""

from __future__ import annotations

import gc
import hashlib
import json
from pathlib import Path
from urllib.parse import quote

from shopguard.engine.detect import Detector
from shopguard.engine.extract import extract
from shopguard.engine.findings import CATEGORIES, mask
from shopguard.engine.known_values import KnownMatcher, load_profile
from shopguard.engine.request import PlainRequest
from shopguard.engine.trackers import Identifiers, Linker, TrackerNames

TEMU = Identifiers(
    TrackerNames(cookies=frozenset({"api_uid", "_nano_fp"}), headers=frozenset({"x-visitor"}))
)
PROFILE = Path(__file__).resolve().parents[1] / "fixtures" / "corpus" / "profile.yaml"


def detector(**kwargs: object) -> Detector:
    return Detector(b"secret-one", KnownMatcher(load_profile(PROFILE)), **kwargs)  # type: ignore[arg-type]


def test_finding_has_the_contract_fields_and_no_raw_value() -> None:
    request = PlainRequest("GET", "https://a/?mobile=13800138000")
    (finding,) = detector().detect(extract(request))
    data = finding.to_dict()
    assert set(data) == {
        "category", "location", "detector", "transform", "confidence", "preview", "fingerprint"
    }  # fmt: skip
    assert data["category"] in CATEGORIES
    assert data["location"] == "query:mobile" and data["detector"] == "profile"
    assert data["preview"] == "138****8000"
    assert "13800138000" not in json.dumps(data)


def test_one_finding_per_category_and_location_highest_confidence_wins() -> None:
    # a known phone under a phone key: the profile (0.95) and the pattern (0.9) agree
    findings = detector().detect(extract(PlainRequest("GET", "https://a/?tel=13800138000")))
    assert [(f.category, f.detector, f.confidence) for f in findings] == [
        ("phone", "profile", 0.95)
    ]


def test_min_confidence_filters() -> None:
    request = PlainRequest("GET", "https://a/?q=Xiaoming")  # a name part: 0.7
    assert detector().detect(extract(request))
    assert not detector(min_confidence=0.8).detect(extract(request))


def test_fingerprint_is_keyed_and_stable() -> None:
    request = PlainRequest("GET", "https://a/?mobile=13800138000&tel=+86%20138%200013%208000")
    findings = detector().detect(extract(request))
    assert len({f.fingerprint for f in findings}) == 1  # two forms, one person's number
    other = Detector(b"secret-two", KnownMatcher(load_profile(PROFILE))).detect(extract(request))
    assert {f.fingerprint for f in other}.isdisjoint({f.fingerprint for f in findings})


def test_raw_values_only_when_asked() -> None:
    request = PlainRequest("GET", "https://a/?mobile=13800138000")
    (finding,) = detector(keep_values=True).detect(extract(request))
    assert finding.to_dict()["value"] == "13800138000"


def test_tracking_ids_by_name_and_linking_to_another_host() -> None:
    linker = Linker()
    first = PlainRequest(
        "GET",
        "https://www.temu.com/",
        [("cookie", "api_uid=CkZ3Zl8xYWJjZGVm; lang=en"), ("x-visitor", "0aqWtxvLmd")],
        response_headers=[("set-cookie", "_nano_fp=XpEonpdaX0UxnpTblC; Path=/")],
    )
    found = {
        (f.category, f.location)
        for f in detector().detect(extract(first), "www.temu.com", TEMU, linker)
    }
    assert found == {
        ("tracking_id", "cookie:api_uid"),
        ("tracking_id", "header:x-visitor"),
        ("tracking_id", "set-cookie:_nano_fp"),
    }
    second = PlainRequest(
        "POST",
        "https://collector.example.net/t?fp=XpEonpdaX0UxnpTblC",
        [("content-type", "application/json")],
        b'{"ids": ["CkZ3Zl8xYWJjZGVm"]}',
    )
    linked = detector().detect(extract(second), "collector.example.net", None, linker)
    assert {(f.location, f.linked_from) for f in linked} == {
        ("query:fp", "set-cookie:_nano_fp@www.temu.com"),
        ("body:$.ids[0]", "cookie:api_uid@www.temu.com"),
    }


def test_a_response_cookie_in_the_stamped_format_is_a_tracking_id_and_links() -> None:
    linker = Linker()
    first = PlainRequest(
        "GET",
        "https://www.temu.com/api/adx/cm/ttc?scene=1",
        response_headers=[
            ("set-cookie", "_ttc=3.8SsaxTmknuj6.1745953370; domain=.temu.com"),
            ("set-cookie", "region=211; path=/"),
        ],
    )
    found = detector().detect(extract(first), "www.temu.com", TEMU, linker)
    assert {(f.category, f.location) for f in found} == {("tracking_id", "set-cookie:_ttc")}
    second = PlainRequest("GET", "https://collector.example.net/t?c=3.8SsaxTmknuj6.1745953370")
    linked = detector().detect(extract(second), "collector.example.net", None, linker)
    assert {(f.location, f.linked_from) for f in linked} == {
        ("query:c", "set-cookie:_ttc@www.temu.com")
    }


def test_name_parts_inside_the_email_are_not_name_findings() -> None:
    request = PlainRequest("GET", "https://a/?u=wang.xiaoming@example.com")
    assert [f.category for f in detector().detect(extract(request))] == ["email"]


def test_hashed_email_in_a_pixel() -> None:
    digest = hashlib.sha256(b"wang.xiaoming@example.com").hexdigest()
    request = PlainRequest("GET", f"https://analytics.example.net/tr?ud[em]={digest}")
    (finding,) = detector().detect(extract(request))
    assert (finding.category, finding.transform, finding.confidence) == ("email", "sha256", 0.99)
    assert finding.preview == "w***@example.com"


def test_masking_shapes() -> None:
    assert mask("phone", "13800138000") == "138****8000"
    assert mask("email", "wang@example.com") == "w***@example.com"
    assert mask("name", "王小明") == "王**"
    assert mask("payment_card", "4111111111111111") == "411*********1111"
    assert "39.99" not in mask("geo", "39.9912,116.3252")


def test_plain_numbers_are_found_only_as_the_profile_has_them() -> None:
    found = detector()
    request = PlainRequest("GET", "https://a/?q=8613800138000&itemId=651234567890&n=13800138000")
    for _ in range(2):  # the second time from the detector's memory of clean values
        findings = found.detect(extract(request))
        assert {(f.category, f.location) for f in findings} == {
            ("phone", "query:q"),  # the profile's number with its country code
            ("phone", "query:n"),
        }


def test_a_request_leaves_no_reference_cycles_behind() -> None:
    """A proxy inspects thousands of requests: each one's fields must be freed as soon as it is
    done (by reference counting), not pile up until the cyclic garbage collector runs."""
    data = quote(json.dumps({"receiver": {"mobile": "13912345678"}, "items": [{"id": 1}]}))
    request = PlainRequest(
        "POST",
        "https://h5api.m.taobao.com/h5/mtop.x/1.0/?t=1700000000000&sign=0123456789abcdef",
        [("cookie", "cna=Zm9vYmFyYmF6cXV4"), ("content-type", "application/x-www-form-urlencoded")],
        f"data={data}".encode(),
    )
    find = detector()
    linker = Linker()
    find.detect(extract(request), "h5api.m.taobao.com", TEMU, linker)  # fills the memories
    gc.collect()
    gc.disable()
    try:
        findings = find.detect(extract(request), "h5api.m.taobao.com", TEMU, linker)
        assert findings  # the request was inspected
        del findings
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_tracking_names_with_reserved_characters_are_found() -> None:
    """Site files name cookies like `connect.sid`; their locations are written escaped."""
    names = Identifiers(
        TrackerNames(cookies=frozenset({"connect.sid"}), params=frozenset({"u[id]"}))
    )
    request = PlainRequest(
        "GET", "https://a/?u%5Bid%5D=Zm9vYmFy9", [("Cookie", "connect.sid=Zm9vYmFyYmF6")]
    )
    found = {(f.category, f.location) for f in Detector(b"k").detect(extract(request), "a", names)}
    assert found == {("tracking_id", "cookie:connect%2Esid"), ("tracking_id", "query:u%5Bid%5D")}


def test_one_request_layout_under_two_sites_names_gives_each_sites_findings() -> None:
    """What a site file says about a request's fields is worked out once per layout: the same
    fields under another site's names (or a reloaded file) are read under those names."""
    request = PlainRequest(
        "GET", "https://a/?deviceId=Zm9vYmFyYmF6cXV4", [("cookie", "vid=Q2hlY2tUaGlzT3V0")]
    )
    tracking = Identifiers(TrackerNames(cookies=frozenset({"vid"})))
    device = Identifiers(device=TrackerNames(cookies=frozenset({"vid"})))
    silent = Identifiers(ignored=TrackerNames(params=frozenset({"deviceId"})))
    by_key = ("device_id", "query:deviceId")
    one = Detector(b"k")
    for names, expected in (
        (tracking, {("tracking_id", "cookie:vid"), by_key}),
        (device, {("device_id", "cookie:vid"), by_key}),
        (None, {by_key}),
        (silent, set()),
        (tracking, {("tracking_id", "cookie:vid"), by_key}),
    ):
        found = {(f.category, f.location) for f in one.detect(extract(request), "a", names)}
        assert found == expected, names


def test_field_layouts_are_remembered_within_a_bound_in_bytes() -> None:
    """A stream of requests whose every field name is new (hostile, or a product list) does not
    grow what detection remembers per layout beyond its bound."""
    from shopguard.engine.detect import _LAYOUT_BYTES

    one = Detector(b"k")
    names = Identifiers(TrackerNames(cookies=frozenset({"vid"})))
    for n in range(60):
        query = "&".join(f"{'k' * 900}{n}x{i}=1" for i in range(60))
        one.detect(extract(PlainRequest("GET", f"https://a/?{query}")), "a", names)
        assert one._layouts.used <= _LAYOUT_BYTES
        assert one._role_lists.used <= _LAYOUT_BYTES
    assert 0 < len(one._layouts) < 60
