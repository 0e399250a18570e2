"""What real clients send, read as the README says: identifiers in composite values, by name in
site files (device or tracking, at any depth), by shape in a User-Agent, by behaviour across
parties; IP addresses by value; placeholders and session names that are no identifier; login
and address context; one preview per value. Request shapes follow tests/fixtures/real."""

from __future__ import annotations

import base64
import json
import textwrap
from pathlib import Path
from urllib.parse import quote

import pytest

from shopguard import paths
from shopguard.engine import composite, pipeline
from shopguard.engine.detect import Detector
from shopguard.engine.extract import extract
from shopguard.engine.known_values import KnownMatcher, load_profile
from shopguard.engine.request import PlainRequest
from shopguard.engine.settings import Config, load_config
from shopguard.engine.trackers import (
    _SIGHTING_BYTES,
    Identifiers,
    Linker,
    TrackerNames,
    persistent_candidate,
)

PROFILE = Path(__file__).resolve().parents[1] / "fixtures" / "corpus" / "profile.yaml"
JD_UA = (
    "jdapp;android;12.1.0;;;appBuild/98787;ef/1;ep/%7B%22ciphertype%22%3A5%7D;"
    "Mozilla/5.0 (Linux; Android 12; SM-G9910 Build/SP1A.210812.016; wv) AppleWebKit/537.36"
)
SHOP = """\
site: shop
hosts: ["*.shop.example", "*.pixel.example"]
first_party: ["*.shop.example"]
tracking_ids: {cookies: [visitor], fields: [fp]}
device_ids: {params: [uuid], headers: [x-devid], fields: [uuid, eid]}
not_identifiers: {cookies: [login_token], headers: [x-sign], fields: [nonce]}
fields:
  device_id: replace
  tracking_id: strip
"""


def found(
    request: PlainRequest, detector: Detector | None = None, **kwargs: object
) -> set[tuple[str, str]]:
    detector = detector or Detector(b"k")
    return {(f.category, f.location) for f in detector.detect(extract(request), **kwargs)}  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("config")
    (root / "sites").mkdir()
    (root / "sites" / "shop.yaml").write_text(textwrap.dedent(SHOP), encoding="utf-8")
    return load_config(root, None)


def run(config: Config, request: PlainRequest, linker: Linker | None = None) -> pipeline.Result:
    ctx = pipeline.Context(
        config, Detector(b"k"), Linker() if linker is None else linker, mode="enforce"
    )
    return pipeline.run(ctx, request)


# -- composite values ---------------------------------------------------------------------------


def test_a_user_agent_is_read_part_by_part() -> None:
    ua = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AliApp(TB/10.30.10) "
        "UTDID/Xk2mZr9bQ1oDAKm5tT0yhB3c WindVane/8.7.2"
    )
    parts = {p.name: ua[p.start : p.end] for p in composite.agent_parts(ua)}
    assert parts["UTDID"] == "Xk2mZr9bQ1oDAKm5tT0yhB3c" and parts["WindVane"] == "8.7.2"
    assert "iPhone" not in parts and 2 not in parts  # comment words and `AliApp(…)` are no part
    jd = "jdapp;android;12.1.0;;a1b2c3d4e5f60718293a4b5c6d7e8f90;network/wifi"
    numbered = {p.name: jd[p.start : p.end] for p in composite.agent_parts(jd)}
    assert numbered[4] == "a1b2c3d4e5f60718293a4b5c6d7e8f90" and numbered["network"] == "wifi"


def test_a_device_id_in_a_user_agent_is_found_at_its_part_not_on_the_whole_header() -> None:
    ua = "jdapp;android;12.1.0;;a1b2c3d4e5f60718293a4b5c6d7e8f90;network/wifi"
    request = PlainRequest("GET", "https://api.m.jd.com/client.action", [("User-Agent", ua)])
    assert found(request) == {("device_id", "header:user-agent/4")}
    plain = PlainRequest("GET", "https://api.m.jd.com/", [("User-Agent", JD_UA)])
    assert found(plain) == set()  # versions, builds, a model: nothing
    imei = PlainRequest(
        "GET", "https://a/", [("User-Agent", "Shop/1.0 (Android) imei/490154203237518")]
    )
    profile = Detector(b"k", KnownMatcher(load_profile(PROFILE)))
    assert found(imei, profile) == {("device_id", "header:user-agent/imei")}  # the part, once


@pytest.mark.parametrize(
    ("part", "device"),
    [
        ("g5t0saklofg3arhyq9defgdfg4j71wn3wbv0vqfk", True),  # JD's iOS uuid: 40 letters, digits
        ("2893820940959741-4298549523842674", True),  # JD's Android one: hex groups
        ("X8jfwCLr8eADAIXrisu+q+oJ", True),  # Alibaba's utdid
        ("supportjdshwkandsupportdarkmode1", False),  # words: too few digits
        ("a1b2c3d4", False),  # too short
        ("jdsupportdarkmode0", False),
    ],
)
def test_a_user_agent_part_is_a_device_id_by_its_shape(part: str, device: bool) -> None:
    ua = f"jdapp;iPhone;10.0.4;14.3;{part};network/wifi;model/iPhone12,1"
    request = PlainRequest("GET", "https://api.m.jd.com/client.action", [("User-Agent", ua)])
    assert found(request) == ({("device_id", "header:user-agent/4")} if device else set())


def test_parts_of_a_composite_cookie_have_their_own_locations() -> None:
    request = PlainRequest(
        "GET", "https://a/", [("Cookie", "dev=os:android|did:5f1c2a9e41d7b36a8c11")]
    )
    assert found(request) == {("device_id", "cookie:dev/did")}


def test_a_fingerprint_named_inside_a_signature_is_found_and_the_rest_stays_ignored() -> None:
    """JD's h5st is a per-request signature (`not_identifiers`) whose `;`-joined second part is
    the browser's fingerprint: a site file can name that one part."""
    h5st = ";".join(
        ["20240612150120123", "3tmzi9xtwzzgmg55", "9b070", "tk03wAbCdEf0123456789",
         "a1b2c3d4e5f60718", "4.4", "1718175680123"]
    )  # fmt: skip
    request = PlainRequest("GET", "https://a/api?h5st=" + quote(h5st))
    names = Identifiers(
        tracking=TrackerNames(fields=frozenset({"query:h5st/1"})),
        ignored=TrackerNames(params=frozenset({"h5st"})),
    )
    assert found(request, trackers=names) == {("tracking_id", "query:h5st/1")}
    locations = {f.location for f in extract(request).fields}
    assert {"query:h5st", "query:h5st/1", "query:h5st/3", "query:h5st/6"} <= locations


def test_editing_a_part_keeps_the_rest_of_the_value() -> None:
    ua = "jdapp;android;12.1.0;;a1b2c3d4e5f60718293a4b5c6d7e8f90;network/wifi"
    assert composite.edited(ua, "user-agent", 4, "X") == "jdapp;android;12.1.0;;X;network/wifi"
    assert composite.edited(ua, "user-agent", "network", None) == (
        "jdapp;android;12.1.0;;a1b2c3d4e5f60718293a4b5c6d7e8f90"
    )
    assert composite.edited("a=1|b=2|c=3", "x", "b", None) == "a=1|c=3"
    assert composite.edited("a=1|b=2", "x", "zz", "9") is None  # not there: nothing edited


def test_a_replaced_device_id_in_a_user_agent_keeps_it_well_formed(shop: Config) -> None:
    ua = "ShopApp/3.2 (Android 12) did/5f1c2a9e41d7b36a8c11d0e2 net/wifi"
    request = PlainRequest("GET", "https://api.shop.example/x", [("User-Agent", ua)])
    result = run(shop, request)
    (action,) = result.outcome.actions
    assert (action.action, action.target, action.applied) == (
        "replace",
        "header:user-agent/did",
        True,
    )
    ((_, sent),) = result.outcome.headers
    head, _, rest = sent.partition("did/")
    assert head == "ShopApp/3.2 (Android 12) " and rest.endswith(" net/wifi")
    new = rest.split(" ")[0]
    assert new != "5f1c2a9e41d7b36a8c11d0e2" and len(new) == 24


def test_a_value_in_the_host_cannot_be_edited_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "shop.yaml").write_text(
        'hosts: ["*.shop.example"]\nfields:\n  phone: replace\n', encoding="utf-8"
    )
    profile = Detector(b"k", KnownMatcher(load_profile(PROFILE)))
    ctx = pipeline.Context(load_config(tmp_path, None), profile, Linker(), mode="enforce")
    result = pipeline.run(ctx, PlainRequest("GET", "https://13800138000.shop.example/"))
    assert [(f.category, f.location) for f in result.findings] == [("phone", "host:0")]
    (action,) = result.outcome.actions
    assert (action.target, action.applied) == ("host:0", False)
    assert "host" in (action.reason or "")


# -- names in site files --------------------------------------------------------------------------


def test_site_files_name_device_and_tracking_ids_also_inside_json(shop: Config) -> None:
    body = "body=" + quote(
        json.dumps(
            {"uuid": "8a1f3c5e7d9b2a4c", "ext": {"eid": "EID7Q2W9E4R1T6Y8", "fp": "a9b8c7d6e5f4"}}
        )
    )
    request = PlainRequest(
        "POST",
        "https://api.shop.example/client?uuid=8a1f3c5e7d9b2a4c",
        [("content-type", "application/x-www-form-urlencoded"), ("x-devid", "Z1x2C3v4B5n6M7")],
        body.encode(),
    )
    slots = {(f.category, f.location) for f in run(shop, request).findings}
    assert slots == {
        ("device_id", "query:uuid"),
        ("device_id", "header:x-devid"),
        ("device_id", "body.form:body.$.uuid"),
        ("device_id", "body.form:body.$.ext.eid"),
        ("tracking_id", "body.form:body.$.ext.fp"),
    }


def test_session_and_signing_names_are_never_identifiers(shop: Config) -> None:
    request = PlainRequest(
        "GET",
        "https://api.shop.example/x",
        [
            ("Cookie", "login_token=c2Vzc2lvbi10b2tlbi0xMjM0NTY3OA"),
            ("x-sign", "deviceid=ab12cd34ef56ab78"),
        ],
    )
    assert not {
        f for f in run(shop, request).findings if f.category in ("device_id", "tracking_id")
    }


@pytest.mark.parametrize(
    "value", ["-1", "0", "NOT_INIT", "null", "00000000-0000-0000-0000-000000000000", ""]
)
def test_placeholders_are_no_identifier(value: str) -> None:
    request = PlainRequest("GET", f"https://a/?deviceId={value}&umidTag=NOT_INIT&oaid={value}")
    assert found(request) == set()


def test_device_keys_glued_or_with_a_digest_suffix_and_app_prefixes() -> None:
    request = PlainRequest(
        "GET",
        "https://a/?clientdeviceid=Qm9vMTIzNDU2Nzg5&deviceidmd5=9e107d9d372bb6826bd81d3542a419d6&appDeviceId=AbCdEf123456&deviceModel=SM-G9910",
    )
    assert found(request) == {
        ("device_id", "query:clientdeviceid"),
        ("device_id", "query:deviceidmd5"),
        ("device_id", "query:appDeviceId"),
    }


def test_a_device_id_is_one_wherever_else_it_travels_in_the_request() -> None:
    """Alibaba's apps send the utdid as `x-utdid` and again as `x-umt` (a tracking header when
    it holds the UMID token): the same value is reported as the device ID in both places."""
    names = Identifiers(
        tracking=TrackerNames(headers=frozenset({"x-umt"})),
        device=TrackerNames(headers=frozenset({"x-utdid"})),
    )
    utdid, umid = "YLdUPMElW5ADAHvPnkmaV+NL", "HVEBBwZLPIHpgAKd8Fpbk0Fc"
    for umt, category in ((utdid, "device_id"), (umid, "tracking_id")):
        request = PlainRequest(
            "GET",
            "https://a/",
            headers=[("x-utdid", utdid), ("x-umt", umt), ("User-Agent", "MTOPSDK/3.1")],
        )
        assert found(request, trackers=names) == {
            ("device_id", "header:x-utdid"),
            (category, "header:x-umt"),
        }


CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/123.0.0.0 Safari/537.36"
)


@pytest.mark.parametrize(
    ("agent", "browser"),
    [
        (CHROME, True),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 "
         "(KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1", True),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", True),
        (CHROME + " Edg/123.0.2420.65", True),
        # an Android web view, an iOS web view with the app's tokens, an app, a library
        ("Mozilla/5.0 (Linux; Android 13; Pixel 7; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Version/4.0 Chrome/122.0.6261.119 Mobile Safari/537.36", False),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_7 like Mac OS X) AppleWebKit/605.1.15 "
         "(KHTML, like Gecko) Mobile/15E148 temu_ios_version/3.10.0", False),
        (JD_UA, False),
        ("okhttp/3.14.9", False),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", False),
    ],
)  # fmt: skip
def test_a_browser_is_told_from_an_app_by_its_user_agent(agent: str, browser: bool) -> None:
    assert composite.browser_agent(agent) is browser


def test_in_a_browser_a_device_id_by_name_is_a_fingerprint_a_hardware_id_stays_one() -> None:
    """A page in a browser can read no hardware or app-install ID: what its script sends as a
    `deviceId` is a browser fingerprint (tracking_id); an IMEI or a MAC address came from an
    app, whatever carried it."""
    url = "https://a/?smdeviceid=WHJMrwNw1k%2FEXAMPLE0a1b2c3d4e5&imei=356938035643809&appDeviceId=AbCdEf123456"
    for agent, category in ((CHROME, "tracking_id"), ("okhttp/3.14.9", "device_id")):
        request = PlainRequest("GET", url, headers=[("User-Agent", agent)])
        assert found(request) == {
            (category, "query:smdeviceid"),
            (category, "query:appDeviceId"),
            ("device_id", "query:imei"),
        }


# -- IP addresses by value --------------------------------------------------------------------


def test_ip_addresses_by_value_in_cookies_headers_and_base64() -> None:
    inner = base64.b64encode(json.dumps({"net": "wifi;203.0.113.45"}).encode()).decode()
    request = PlainRequest(
        "GET",
        f"https://a/?v=1.2.3.4&bundle=2.10.3.1&ctx={inner}",
        [
            ("Cookie", "loc=CN|198.51.100.23|beijing; ali_apache_id=11.1.2.3.1700000000000.1"),
            ("User-Agent", "Mozilla/5.0 Chrome/124.0.6367.91 Safari/537.36"),
            ("x-net", "lan=192.168.1.7;wan=203.0.113.9"),
        ],
    )
    assert found(request) == {
        ("ip_address", "cookie:loc/1"),
        ("ip_address", "header:x-net/wan"),
        ("ip_address", "query:ctx.$.net/1"),  # `wifi;<address>`: its part
    }


def test_a_user_ip_under_an_ip_key_but_not_a_server_or_private_one() -> None:
    request = PlainRequest(
        "GET", "https://a/?clientIp=203.0.113.7&serverIp=203.0.113.8&localIp=10.1.2.3"
    )
    assert found(request) == {("ip_address", "query:clientIp")}


# -- identifiers by behaviour ------------------------------------------------------------------


def test_a_constant_value_that_reaches_a_second_party_is_a_tracking_id(shop: Config) -> None:
    linker = Linker()
    value = "Qx7Lm2Vz9Rk4Tn8Wp3Ys"
    first = PlainRequest("GET", f"https://www.shop.example/p?sid2={value}")
    again = PlainRequest("GET", f"https://api.shop.example/q?ref={value}")  # same party: the shop
    pixel = PlainRequest(
        "GET", f"https://t.pixel.example/e?u={value}", [("Referer", "https://www.shop.example/")]
    )
    assert not run(shop, first, linker).findings  # a first sighting is not reported
    assert not run(shop, again, linker).findings  # several hosts of one party are one party
    (finding,) = run(shop, pixel, linker).findings
    assert (finding.category, finding.location, finding.linked_from) == (
        "tracking_id",
        "query:u",
        "query:sid2@www.shop.example",
    )
    later = PlainRequest("GET", f"https://www.shop.example/p?sid2={value}")
    assert [f.category for f in run(shop, later, linker).findings] == ["tracking_id"]


def test_a_value_seen_at_one_party_is_reported_there_too_once_it_reached_another(
    shop: Config,
) -> None:
    """With one detector for the whole run, as in the proxy: the shop's requests before the
    value reached the pixel are one party's; after it, they carry a cross-party identifier."""
    ctx = pipeline.Context(shop, Detector(b"k"), Linker(), mode="observe")
    value = "Qx7Lm2Vz9Rk4Tn8Wp3Ys"
    at_shop = PlainRequest("GET", f"https://www.shop.example/p?sid2={value}")
    pixel = PlainRequest(
        "GET", f"https://t.pixel.example/e?u={value}", [("Referer", "https://www.shop.example/")]
    )
    assert not pipeline.run(ctx, at_shop).findings
    assert not pipeline.run(ctx, at_shop).findings  # (the shop alone, again: marked as such)
    assert [f.location for f in pipeline.run(ctx, pixel).findings] == ["query:u"]
    again = pipeline.run(ctx, at_shop).findings
    assert [(f.category, f.location) for f in again] == [("tracking_id", "query:sid2")]


def test_a_cookie_the_shop_sets_is_seen_at_the_shop_and_its_echo_to_a_tracker_reported() -> None:
    """Taobao sets its visitor cookie `t` (a name its site file does not list), the page's
    script echoes it to ynuf.aliapp.org: the echo is the leak, linked from the Set-Cookie; the
    cookie going back to the shop is not "linked from the tracker", and a cookie that only goes
    back to the shop is no finding."""
    config = load_config(paths.shipped_config_dir(), None)
    detector, linker = Detector(b"k"), Linker()
    value, other = "a1f3c9e27b4d5f60718293a4b5c6d7e8", "dBx7Qm2PaZ9kLw4Rt6Yv"

    def detect(request: PlainRequest) -> list[tuple[str, str, str | None]]:
        routed = pipeline.route(config, request.target, None, None)
        assert routed is not None
        party = pipeline.party_of(routed, routed.host)
        found = detector.detect(
            extract(request), routed.host, routed.site.identifiers, linker, party
        )
        return [(f.category, f.location, f.linked_from) for f in found]

    headers = [
        ("Set-Cookie", f"t={value}; Domain=.taobao.com; Path=/; Max-Age=7776000"),
        ("Set-Cookie", f"l={other}; Domain=.taobao.com; Path=/"),
    ]
    response = PlainRequest("GET", "", (), b"", False, headers, host="www.taobao.com")
    assert detect(response) == []  # as before: plain values set by the shop are no finding
    echo = PlainRequest("GET", f"https://ynuf.aliapp.org/w/wu.json?vid={value}&ev=pv")
    assert detect(echo) == [("tracking_id", "query:vid", "set-cookie:t@www.taobao.com")]
    cookies = [("Cookie", f"t={value}; l={other}")]
    for host in ("s.taobao.com", "h5api.m.taobao.com"):
        shop = detect(PlainRequest("GET", f"https://{host}/x", cookies))
        assert {linked for _, _, linked in shop} <= {"set-cookie:t@www.taobao.com"}
        assert "cookie:l" not in {location for _, location, _ in shop}  # (one party: the shop)


def test_the_proxy_sees_a_cookie_set_by_the_shop_at_the_shop() -> None:
    """The same through the pipeline the proxy runs: the response's cookies, then the echo."""
    config = load_config(paths.shipped_config_dir(), None)
    ctx = pipeline.Context(config, Detector(b"k"), Linker(), mode="observe")
    value = "a1f3c9e27b4d5f60718293a4b5c6d7e8"
    routed = pipeline.route(config, "www.taobao.com", None, None)
    assert routed is not None
    headers = [("Set-Cookie", f"t={value}; Domain=.taobao.com; Path=/")]
    assert pipeline.response_cookies(ctx, routed, headers) == []
    echo = PlainRequest("GET", f"https://ynuf.aliapp.org/w/wu.json?vid={value}&ev=pv")
    found = [(f.location, f.linked_from) for f in pipeline.run(ctx, echo).findings]
    assert found == [("query:vid", "set-cookie:t@www.taobao.com")]


@pytest.mark.parametrize(
    "value",
    [
        "1733011200123",
        "1733011200",
        "123456789012",
        "aaaaaaaaaaaa",
        "https://x.example/a",
        "hello world 12",
    ],
)
def test_timestamps_numbers_words_and_urls_are_no_persistent_candidate(value: str) -> None:
    assert not persistent_candidate(value)


def test_the_persistent_rule_is_bounded_in_memory() -> None:
    linker = Linker(sightings_bytes=10 * _SIGHTING_BYTES)  # ten values
    for index in range(50):
        linker.sighted(f"value-{index:04d}-xyz", "a", "query:x")
    assert len(linker._sightings) == linker.sightings_capacity == 10
    assert linker.sighted("value-0000-xyz", "b", "query:x") is None  # forgotten: seen anew


# -- context and consistency -------------------------------------------------------------------


def test_login_fields_hold_a_phone_or_an_email_by_shape() -> None:
    request = PlainRequest(
        "POST",
        "https://a/login",
        [("content-type", "application/x-www-form-urlencoded")],
        b"loginname=13912345678&user_name=li.hua%40example.org&nick=huahua",
    )
    assert found(request) == {("phone", "body.form:loginname"), ("email", "body.form:user_name")}


def test_address_context_postcode_by_its_neighbours_and_detail_under_an_address() -> None:
    body = json.dumps(
        {
            "address": {"detail": "Room 5, 12 Spring Road", "post": "200001"},
            "addr": "Lane 3 No. 9",
            "post": "310000",
            "goods": {"post": "1"},
        }
    )
    request = PlainRequest(
        "POST", "https://a/", [("content-type", "application/json")], body.encode()
    )
    assert found(request) == {
        ("address", "body:$.address.detail"),
        ("postcode", "body:$.address.post"),
        ("address", "body:$.addr"),
        ("postcode", "body:$.post"),
    }


def test_the_buyers_own_value_is_reported_as_theirs_with_one_preview() -> None:
    profile = Detector(b"k", KnownMatcher(load_profile(PROFILE)))
    request = PlainRequest(
        "GET", "https://a/?mobile=+8613800138000&tel=138-0013-8000&x=13800138000"
    )
    findings = profile.detect(extract(request))
    assert {f.detector for f in findings} == {"profile"}
    assert {f.preview for f in findings} == {"138****8000"}
    other = Detector(b"k").detect(
        extract(PlainRequest("GET", "https://a/?mobile=+8613912345678&phone=13912345678"))
    )
    assert {f.preview for f in other} == {"139****5678"}


def test_identifiers_objects_merge_and_ignore() -> None:
    ids = Identifiers(
        ignored=TrackerNames(headers=frozenset({"x-sign"}), fields=frozenset({"nonce"}))
    )
    assert ids.ignores("header:x-sign", "x-sign") and ids.ignores("header:x-sign/did", "did")
    assert ids.ignores("body:$.a.nonce", "nonce") and not ids.ignores("header:x-sig", "x-sig")


def test_a_part_of_a_composite_cookie_is_replaced_in_place_and_the_rest_kept(
    shop: Config,
) -> None:
    cookie = "dev=os:android|did:5f1c2a9e41d7b36a8c11|net:wifi; lang=en"
    request = PlainRequest("GET", "https://api.shop.example/x", [("Cookie", cookie)])
    result = run(shop, request)
    assert [(a.action, a.target, a.applied) for a in result.outcome.actions] == [
        ("replace", "cookie:dev/did", True)
    ]
    ((_, sent),) = result.outcome.headers
    head, _, tail = sent.partition("did:")
    assert head == "dev=os:android|" and tail.endswith("|net:wifi; lang=en")
    assert "5f1c2a9e41d7b36a8c11" not in sent and len(tail.split("|")[0]) == 20


def test_parts_joined_in_a_json_value_are_edited_one_by_one(shop: Config) -> None:
    data = quote(json.dumps({"deviceID": "202cbc586b6c64d7|d0bc56cf-2c1a-4f13-bac6-cd956e8b97da"}))
    request = PlainRequest("GET", f"https://api.shop.example/x?data={data}")
    result = run(shop, request)
    assert sorted(a.target for a in result.outcome.actions if a.applied) == [
        "query:data.$.deviceID/0",
        "query:data.$.deviceID/1",
    ]
    sent = result.outcome.url
    assert "202cbc586b6c64d7" not in sent and "d0bc56cf" not in sent and "%7C" in sent


def test_a_time_is_no_identifier_and_a_build_is_no_device_id() -> None:
    request = PlainRequest(
        "GET",
        "https://a/?visitor_id=1733011200123&tmr_lvidTS=1733011200123",
        [("User-Agent", "phh_android_version/7.1.0 phh_android_build/9f86d081884c7d659a2feaa0")],
    )
    assert found(request) == set()
    jd = "jdapp;android;9.4.4;10;2893820940959741-4298549523842674;network/wifi"
    request = PlainRequest("GET", "https://api.m.jd.com/", [("User-Agent", jd)])
    assert found(request) == {("device_id", "header:user-agent/4")}  # hex groups joined by -


def test_a_named_id_is_found_inside_a_longer_value_in_every_session_of_one_detector() -> None:
    """`scan` reads each capture file as its own session with one detector: what one session
    searched must not hide what another session's identifiers are inside of."""
    names = Identifiers(device=TrackerNames(headers=frozenset({"x-utdid"})))
    detector = Detector(b"k")
    first, second = "WkqY8pLmN2vR7tXc5bHs3dQa", "ZpQ4rT7yU1iO9pAs5dFg8hJk"
    trace = f"{second}1733011200123000123"  # (the app's trace ID: its device ID, a time, a count)

    def request(device: str) -> PlainRequest:
        headers = [("x-utdid", device), ("x-c-traceid", trace)]
        return PlainRequest("GET", "https://acs.m.taobao.com/gw/x/1.0/", headers)

    one = detector.detect(extract(request(first)), "acs.m.taobao.com", names, Linker(), "site:t")
    assert ("device_id", "header:x-c-traceid") not in {(f.category, f.location) for f in one}
    two = detector.detect(extract(request(second)), "acs.m.taobao.com", names, Linker(), "site:t")
    inside = [f for f in two if f.location == "header:x-c-traceid"]
    assert [(f.category, f.linked_from) for f in inside] == [
        ("device_id", "header:x-utdid@acs.m.taobao.com")
    ]


def test_an_address_packed_in_an_identifiers_bytes_is_read_where_the_site_file_says(
    tmp_path: Path,
) -> None:
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "shop.yaml").write_text(
        'hosts: ["*.shop.example"]\ntracking_ids: {cookies: [cna]}\npacked_ips: {cna: 10}\n',
        encoding="utf-8",
    )
    config = load_config(tmp_path, None)
    raw = bytes(range(8)) + b"\x02\x01" + bytes([203, 0, 113, 61]) + b"\x10\x20\x30\x40"
    cna = base64.b64encode(raw).decode()
    private = base64.b64encode(raw[:10] + bytes([192, 168, 1, 2]) + raw[14:]).decode()
    short = base64.b64encode(raw[:12]).decode()

    def slots(cookie: str) -> set[tuple[str, str]]:
        request = PlainRequest("GET", "https://www.shop.example/", [("Cookie", cookie)])
        ctx = pipeline.Context(config, Detector(b"k"), Linker())
        return {(f.category, f.location) for f in pipeline.run(ctx, request).findings}

    assert slots(f"cna={cna}") == {("tracking_id", "cookie:cna"), ("ip_address", "cookie:cna")}
    assert slots(f"cna={private}") == {("tracking_id", "cookie:cna")}  # not a user's address
    assert slots(f"cna={short}") == {("tracking_id", "cookie:cna")}  # too short to hold one


def test_an_address_written_at_the_start_of_an_identifier_is_read_where_the_site_file_says(
    tmp_path: Path,
) -> None:
    """1688's ali_ab is `<address>.<ms time>.<n>`; without the site file's word such a dotted
    run is no address (a server's `ali_apache_id` has the same shape)."""
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "shop.yaml").write_text(
        'hosts: ["*.shop.example"]\npacked_ips: {ali_ab: text}\n', encoding="utf-8"
    )
    config = load_config(tmp_path, None)

    def slots(cookie: str) -> set[tuple[str, str]]:
        request = PlainRequest("GET", "https://www.shop.example/", [("Cookie", cookie)])
        ctx = pipeline.Context(config, Detector(b"k"), Linker())
        return {(f.category, f.location) for f in pipeline.run(ctx, request).findings}

    request = PlainRequest(
        "GET", "https://www.shop.example/", [("Cookie", "ali_ab=198.51.100.23.1678161716466.4")]
    )
    ctx = pipeline.Context(config, Detector(b"k"), Linker())
    (address,) = [f for f in pipeline.run(ctx, request).findings if f.category == "ip_address"]
    assert (address.location, address.transform) == ("cookie:ali_ab", "")  # in clear, not bytes
    v6 = slots("ali_ab=2001:db8:383:515:6f10:7c53:a1a0:ef97.1635751613086.3")
    assert ("ip_address", "cookie:ali_ab") in v6
    assert ("ip_address", "cookie:ali_ab") not in slots("ali_ab=10.1.2.3.1678161716466.4")
    assert ("ip_address", "cookie:other") not in slots("other=198.51.100.23.1678161716466.4")


def test_packed_ips_in_a_site_file_are_checked(tmp_path: Path) -> None:
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "shop.yaml").write_text(
        'hosts: ["*.shop.example"]\npacked_ips: {cna: 99}\n', encoding="utf-8"
    )
    with pytest.raises(Exception, match=r"shop\.yaml:2: packed_ips\.cna: expected a byte offset"):
        load_config(tmp_path, None)


def test_a_site_file_names_an_identifier_by_its_location_too(tmp_path: Path) -> None:
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "shop.yaml").write_text(
        'hosts: ["*.shop.example"]\n'
        'tracking_ids: {fields: ["body:$.context.user.vid"]}\n'
        'device_ids: {fields: ["query:data.$.dev%2Eid"]}\n',
        encoding="utf-8",
    )
    config = load_config(tmp_path, None)
    body = json.dumps({"context": {"user": {"vid": "Qm9vMTIzNDU2Nzg5"}, "vid": "WnV1OTg3NjU0MzIx"}})
    data = quote(json.dumps({"dev.id": "AbC123dEf456"}))
    request = PlainRequest(
        "POST",
        f"https://api.shop.example/e?data={data}",
        [("content-type", "application/json")],
        body.encode(),
    )
    ctx = pipeline.Context(config, Detector(b"k"), Linker())
    slots = {(f.category, f.location) for f in pipeline.run(ctx, request).findings}
    assert slots == {
        ("tracking_id", "body:$.context.user.vid"),  # that path only, not `$.context.vid`
        ("device_id", "query:data.$.dev%2Eid"),
    }


def test_a_field_location_in_a_site_file_must_follow_the_notation(tmp_path: Path) -> None:
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "shop.yaml").write_text(
        'hosts: ["*.shop.example"]\ntracking_ids: {fields: ["body:$.a[x]"]}\n', encoding="utf-8"
    )
    with pytest.raises(Exception, match=r"shop\.yaml:2: .*expected a field name or a location"):
        load_config(tmp_path, None)


@pytest.mark.parametrize("others", [0, 12], ids=["a few remembered", "many remembered"])
def test_remembered_ids_are_found_inside_longer_values_at_each_place(others: int) -> None:
    """A few remembered long values are searched for one by one, many by an automaton: both
    find each one inside a longer value wherever it is, and never a value as the whole of one."""
    linker = Linker()
    device, visitor = "WkqY8pLmN2vR7tXc5bHs3dQa", "ZpQ4rT7yU1iO9pAs5dFg8hJk"
    for n in range(others):
        linker.remember(f"Other{n:02d}Id8pLmN2vR7tXc5b", f"cookie:o{n}@a.example")
    linker.remember(device, "header:x-utdid@acs.m.taobao.com", "device_id")
    linker.remember(visitor, "cookie:cna@www.taobao.com")
    values = (
        "short",
        device,  # the whole of it: not "inside"
        f"{device}1733011200123000123",
        f"x{visitor}y{device}z{visitor}",
        "nothing remembered in this long value at all",
    )
    assert linker.inside(values) == [(2, device), (3, device), (3, visitor)]
    linker.remember("AnotherNewLongId1234567", "cookie:n@b.example")  # (searched afresh)
    assert linker.inside(("__AnotherNewLongId1234567__", visitor)) == [
        (0, "AnotherNewLongId1234567")
    ]
