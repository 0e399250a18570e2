"""Redaction: what a policy does to a request — blocks, strips, replaces, re-signing — and the
request as it would leave. Findings come from the real detector."""

from __future__ import annotations

import gzip
import hashlib
import json
import textwrap
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import phonenumbers
import pytest

from shopguard.engine import pipeline
from shopguard.engine.body import read_body, read_multipart
from shopguard.engine.detect import Detector
from shopguard.engine.findings import Finding
from shopguard.engine.mtop import mtop_sign
from shopguard.engine.redact import Outcome, block_status, redact
from shopguard.engine.request import PlainRequest
from shopguard.engine.settings import Config, load_config

POLICY = """\
site: shop
hosts: ["*.shop.example", "*.track.example"]
first_party: ["*.shop.example"]
tracking_ids: {cookies: [visitor]}
trackers:
  block: ["beacon.track.example", "*.shop.example/log/*"]
  strip_params: [spm, "/^utm_/"]
  strip_cookies:
    "*.track.example": [visitor]
  strip_headers: [x-fingerprint]
  strip_fields: [umid]
fields:
  phone: {action: replace, hosts: ["!*.shop.example"]}
  email: {action: strip}
  id_number: block
  tracking_id: {action: replace, hosts: ["api.shop.example"]}
allow:
  - match: "api.shop.example/order/*"
    fields: [email]
  - match: "www.shop.example/help"
on_uninspected: block
"""
SECRET = b"k" * 32


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("config")
    (root / "sites").mkdir()
    (root / "sites" / "shop.yaml").write_text(textwrap.dedent(POLICY), encoding="utf-8")
    return load_config(root, None)


def run(
    config: Config,
    request: PlainRequest,
    enforce: bool = True,
    inspection: str | None = None,
) -> Outcome:
    """The request through the engine as the proxy runs it (`inspection` forced if given)."""
    if inspection is not None:
        site = config.sites[0]
        return redact(
            site.policy, request, read_body(request, 1 << 20), "www.shop.example", [],
            site=site.name, secret=SECRET, enforce=enforce, inspection=inspection,
        )  # fmt: skip
    return evaluate(config, request, "enforce" if enforce else "observe").outcome


def evaluate(config: Config, request: PlainRequest, mode: str = "enforce") -> pipeline.Result:
    return pipeline.run(pipeline.Context(config, Detector(SECRET), mode=mode), request)


def summary(outcome: Outcome) -> list[tuple[str, str, bool]]:
    return [(a.action, a.target, a.applied) for a in outcome.actions]


def test_block_status_by_destination_then_accept() -> None:
    assert block_status([("Sec-Fetch-Dest", "image")]) == 204
    assert block_status([("Sec-Fetch-Dest", "script")]) == 204
    assert block_status([("sec-fetch-dest", "document"), ("accept", "image/png")]) == 403
    assert block_status([("accept", "text/html,application/xhtml+xml")]) == 403
    assert block_status([("accept", "*/*")]) == 204


def test_tracker_host_is_blocked_with_its_rule(policy: Config) -> None:
    request = PlainRequest("GET", "https://beacon.track.example/t.gif?id=1", [("accept", "*/*")])
    outcome = run(policy, request)
    (action,) = outcome.actions
    assert (action.action, action.status, action.applied) == ("block", 204, True)
    assert action.rule.endswith("sites/shop.yaml:6")
    assert outcome.block_status == 204
    observed = run(policy, request, enforce=False)
    assert summary(observed) == [("block", "request", False)]
    assert observed.block_status is None  # observe mode: it goes out


def test_allow_everything_exempts_a_url(policy: Config) -> None:
    request = PlainRequest("GET", "https://www.shop.example/help?spm=a.b&email=a@b.co")
    outcome = run(policy, request)
    assert outcome.actions == [] and not outcome.changed


def test_params_are_stripped_and_the_rest_leaves_as_it_came(policy: Config) -> None:
    url = "https://www.shop.example/item?id=1&spm=a1z.2&q=%E5%8C%85+x&utm_source=ad#utm_x=1&k=v"
    outcome = run(policy, PlainRequest("GET", url))
    assert outcome.url == "https://www.shop.example/item?id=1&q=%E5%8C%85+x#k=v"
    assert summary(outcome) == [
        ("strip", "query:spm", True),
        ("strip", "query:utm_source", True),
        ("strip", "fragment:utm_x", True),
    ]
    assert outcome.actions[0].rule.endswith("sites/shop.yaml:7")


def test_cookies_and_headers_are_stripped_where_the_rules_say(policy: Config) -> None:
    headers = [("Cookie", "visitor=Zm9vYmFyYmF6; sid=42"), ("X-Fingerprint", "abc")]
    tracker = run(policy, PlainRequest("GET", "https://t.track.example/c", headers))
    assert ("Cookie", "sid=42") in tracker.headers
    assert not any(k.lower() == "x-fingerprint" for k, _ in tracker.headers)
    shop = run(policy, PlainRequest("GET", "https://www.shop.example/", headers))
    assert ("Cookie", "visitor=Zm9vYmFyYmF6; sid=42") in shop.headers  # not on the shop itself
    assert summary(shop) == [("strip", "header:x-fingerprint", True)]


def test_body_fields_are_stripped_in_json_and_in_data_json(policy: Config) -> None:
    body = json.dumps({"a": 1, "device": {"umid": "T123", "os": "x"}}).encode()
    request = PlainRequest(
        "POST", "https://api.shop.example/x", [("content-type", "application/json")], body
    )
    outcome = run(policy, request)
    assert summary(outcome) == [("strip", "body:$.device.umid", True)]
    assert json.loads(outcome.body or b"") == {"a": 1, "device": {"os": "x"}}
    form = "data=" + json.dumps({"umid": "T1", "keep": "y"})
    request = PlainRequest(
        "POST",
        "https://api.shop.example/x",
        [("content-type", "application/x-www-form-urlencoded")],
        form.encode(),
    )
    outcome = run(policy, request)
    assert summary(outcome) == [("strip", "body.form:data.$.umid", True)]
    assert json.loads(dict(parse_qsl((outcome.body or b"").decode()))["data"]) == {"keep": "y"}


@pytest.mark.parametrize(
    ("mark", "codec"),
    [
        (b"\xef\xbb\xbf", "utf-8"),
        (b"", "utf-16-le"),
        (b"\xfe\xff", "utf-16-be"),
        (b"\xff\xfe\x00\x00", "utf-32-le"),
    ],
)
def test_json_with_a_byte_order_mark_or_in_utf16_is_edited_in_its_encoding(
    policy: Config, mark: bytes, codec: str
) -> None:
    """The extraction reads such bodies, so redaction edits them, and the site gets the body in
    the encoding it came in."""
    body = mark + json.dumps({"device": {"umid": "T123", "os": "x"}}).encode(codec)
    ct = [("content-type", "application/json")]
    outcome = run(policy, PlainRequest("POST", "https://api.shop.example/x", ct, body))
    assert summary(outcome) == [("strip", "body:$.device.umid", True)]
    assert outcome.body is not None and outcome.body.startswith(mark)
    assert json.loads(outcome.body[len(mark) :].decode(codec)) == {"device": {"os": "x"}}


def test_json_inside_record_separators_is_edited_and_keeps_them(policy: Config) -> None:
    """SignalR ends each JSON message with \\x1e: the edited message must still end with it."""
    body = b'{"device": {"umid": "T123", "os": "x"}}\n\x1e'
    ct = [("content-type", "text/plain")]
    outcome = run(policy, PlainRequest("POST", "https://api.shop.example/x", ct, body))
    assert summary(outcome) == [("strip", "body:$.device.umid", True)]
    assert outcome.body == b'{"device":{"os":"x"}}\n\x1e'


def test_a_gzip_body_is_edited_decoded(policy: Config) -> None:
    body = gzip.compress(json.dumps({"umid": "T123"}).encode())
    headers = [("content-type", "application/json"), ("content-encoding", "gzip")]
    outcome = run(policy, PlainRequest("POST", "https://api.shop.example/x", headers, body))
    assert outcome.body == b"{}"  # the proxy encodes it again as content-encoding says


def test_phone_replaced_only_towards_third_parties(policy: Config) -> None:
    request = PlainRequest("GET", "https://t.track.example/p?mobile=13912345678&x=1")
    outcome = run(policy, request)
    (action,) = outcome.actions
    assert (action.action, action.category, action.target) == ("replace", "phone", "query:mobile")
    sent = dict(parse_qsl(urlsplit(outcome.url).query))
    assert sent["mobile"] != "13912345678" and sent["x"] == "1"
    assert phonenumbers.is_valid_number(phonenumbers.parse(sent["mobile"], "CN"))
    assert run(policy, request).url == outcome.url  # the same stand-in every time
    first_party = PlainRequest("GET", "https://www.shop.example/p?mobile=13912345678")
    assert run(policy, first_party).actions == []


def test_tracking_id_replaced_with_a_per_site_value(policy: Config) -> None:
    visitor = "Zm9vYmFyYmF6cXV4MTIz"
    request = PlainRequest("GET", "https://api.shop.example/c", [("cookie", f"visitor={visitor}")])
    outcome = run(policy, request)
    assert summary(outcome) == [("replace", "cookie:visitor", True)]
    ((_, cookie),) = outcome.headers
    stand_in = cookie.removeprefix("visitor=")
    assert stand_in != visitor and len(stand_in) == len(visitor)
    assert run(policy, request).headers == outcome.headers  # stable for the site
    site = policy.sites[0]
    other = redact(
        site.policy, request, read_body(request, 1 << 20), "api.shop.example",
        run_findings(policy, request),
        site="another-site", secret=SECRET, enforce=True,
    )  # fmt: skip
    assert other.headers != outcome.headers  # and unlinkable across sites
    on_tracker = run(policy, PlainRequest("GET", "https://t.track.example/c", request.headers))
    assert summary(on_tracker) == [("strip", "cookie:visitor", True)]  # strip rules there


def run_findings(config: Config, request: PlainRequest) -> list[Finding]:
    return evaluate(config, request).findings


def test_allowed_categories_are_left_alone_where_allowed(policy: Config) -> None:
    url = "https://api.shop.example/order/create?email=wang@example.com"
    assert run(policy, PlainRequest("GET", url)).actions == []
    other = run(policy, PlainRequest("GET", "https://api.shop.example/cart?email=wang@example.com"))
    assert summary(other) == [("strip", "query:email", True)]
    assert "email" not in other.url


def test_a_category_with_block_blocks_the_request(policy: Config) -> None:
    request = PlainRequest(
        "GET", "https://www.shop.example/kyc?idcard=11010519491231002X", [("accept", "text/html")]
    )
    outcome = run(policy, request)
    (action,) = outcome.actions
    assert (action.action, action.category, action.status) == ("block", "id_number", 403)
    assert action.reason == "carries id_number (query:idcard)"
    assert outcome.block_status == 403


def test_uninspected_bodies_follow_on_uninspected(policy: Config) -> None:
    request = PlainRequest("POST", "https://www.shop.example/upload", body=None)
    outcome = run(policy, request, inspection="none")
    assert summary(outcome) == [("block", "request", True)]
    assert outcome.actions[0].rule.endswith("sites/shop.yaml:21")


def test_observe_mode_reports_without_changing(policy: Config) -> None:
    url = "https://www.shop.example/item?spm=1"
    outcome = run(policy, PlainRequest("GET", url), enforce=False)
    assert summary(outcome) == [("strip", "query:spm", False)]
    assert outcome.url == "https://www.shop.example/item"  # as it would leave in enforce mode


def test_encoded_values_are_not_replaced_in_place(policy: Config) -> None:
    import base64

    hidden = base64.b64encode(b"13912345678").decode()
    request = PlainRequest("GET", f"https://t.track.example/p?mobile={hidden}")
    outcome = run(policy, request)
    (action,) = outcome.actions
    assert not action.applied
    assert action.reason == "the value is encoded (base64); it can be stripped, not replaced"
    assert not outcome.changed


# -- signed mtop calls ----------------------------------------------------------------------------


def mtop_request(token: str | None, data: dict[str, object]) -> PlainRequest:
    text = json.dumps(data, separators=(",", ":"))
    t, app_key = "1700000000000", "12574478"
    sign = mtop_sign(token or "", t, app_key, text)
    cookie = [("cookie", f"_m_h5_tk={token}_1700000000000; cna=x")] if token else []
    from urllib.parse import quote

    url = (
        f"https://h5api.m.taobao.com/h5/mtop.order.create/1.0/?jsv=2.7.2&appKey={app_key}&t={t}"
        f"&sign={sign}&api=mtop.order.create&v=1.0&data={quote(text)}"
    )
    return PlainRequest("GET", url, cookie)


def mtop_policy(tmp_path: Path) -> Config:
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "taobao.yaml").write_text(
        'hosts: ["*.taobao.com"]\ntrackers:\n  strip_fields: [umidToken]\n', encoding="utf-8"
    )
    return load_config(tmp_path, None)


def test_an_edited_mtop_call_is_signed_again(tmp_path: Path) -> None:
    token = hashlib.md5(b"session").hexdigest()
    request = mtop_request(token, {"umidToken": "T2gA", "itemId": "1"})
    outcome = run(mtop_policy(tmp_path), request)
    assert summary(outcome) == [
        ("strip", "query:data.$.umidToken", True),
        ("resign", "query:sign", True),
    ]
    query = dict(parse_qsl(urlsplit(outcome.url).query))
    assert json.loads(query["data"]) == {"itemId": "1"}
    assert (
        query["sign"]
        == hashlib.md5(
            f"{token}&{query['t']}&{query['appKey']}&{query['data']}".encode()
        ).hexdigest()
    )


def test_an_mtop_call_without_token_is_left_as_it_was(tmp_path: Path) -> None:
    request = mtop_request(None, {"umidToken": "T2gA", "itemId": "1"})
    outcome = run(mtop_policy(tmp_path), request)
    (action,) = outcome.actions
    assert not action.applied
    assert action.reason == "a signed mtop call without the _m_h5_tk token cannot be re-signed"
    assert not outcome.changed


def test_a_multipart_field_is_removed_with_its_delimiter(policy: Config) -> None:
    body = (
        b'preamble\r\n--b\r\nContent-Disposition: form-data; name="email"\r\n\r\n'
        b'wang@example.com\r\n--b\r\nContent-Disposition: form-data; name="n"\r\n\r\n1\r\n'
        b"--b--\r\nepilogue"
    )
    request = PlainRequest(
        "POST",
        "https://www.shop.example/f",
        [("content-type", "multipart/form-data; boundary=b")],
        body,
    )
    outcome = run(policy, request)
    (action,) = outcome.actions
    assert (action.action, action.target, action.applied) == ("strip", "body.form:email", True)
    assert outcome.body == (
        b'preamble\r\n--b\r\nContent-Disposition: form-data; name="n"\r\n\r\n1\r\n--b--\r\nepilogue'
    )


# -- edits that must leave everything else as it came ----------------------------------------------


def config_of(tmp_path: Path, text: str) -> Config:
    (tmp_path / "sites").mkdir(exist_ok=True)
    site = 'site: shop\nhosts: ["*.shop.example"]\n' + textwrap.dedent(text)
    (tmp_path / "sites" / "shop.yaml").write_text(site, encoding="utf-8")
    return load_config(tmp_path, None)


def json_post(url: str, document: object, content_type: str = "application/json") -> PlainRequest:
    return PlainRequest(
        "POST", url, [("content-type", content_type)], json.dumps(document).encode()
    )


def test_removing_array_items_keeps_the_other_positions(tmp_path: Path) -> None:
    config = config_of(tmp_path, "fields:\n  email: strip\n")
    document = {"emails": ["a.b@example.org", "c.d@example.net", "not-personal"]}
    outcome = run(config, json_post("https://www.shop.example/x", document))
    assert [a.applied for a in outcome.actions] == [True, True]
    assert json.loads(outcome.body or b"") == {"emails": ["not-personal"]}


def test_every_cookie_header_is_read_and_edited_in_place(tmp_path: Path) -> None:
    config = config_of(tmp_path, "trackers:\n  strip_cookies: [visitor]\n")
    headers = [("cookie", "visitor=1; flag"), ("cookie", "session=abc"), ("cookie", "visitor=2")]
    outcome = run(config, PlainRequest("GET", "https://www.shop.example/p?", headers))
    assert outcome.headers == [("cookie", "flag"), ("cookie", "session=abc")]
    assert outcome.url == "https://www.shop.example/p?"  # the URL was not touched


def test_bad_input_is_handled_not_raised(tmp_path: Path) -> None:
    config = config_of(tmp_path, "trackers:\n  strip_fields: [umid]\n")
    surrogate = '{"umid":1,"x":"\\ud800"}'
    outcome = run(
        config, PlainRequest("POST", "https://www.shop.example/x", [], surrogate.encode())
    )
    assert outcome.body == b'{"x":"\\ud800"}'
    query = f"https://www.shop.example/h5/x?data={quote(surrogate)}"
    assert "%5Cud800" in run(config, PlainRequest("GET", query)).url
    broken = PlainRequest("GET", "https://www.shop.example[x?spm=1")
    result = evaluate(config, broken, "observe")
    assert result.site is None and result.outcome.actions == []  # no site, no exception
    shop = config.sites[0]
    assert redact(shop.policy, broken, read_body(broken, 1 << 20), "www.shop.example", [],
                  site="shop", secret=SECRET, enforce=True).actions == []  # fmt: skip


def test_a_text_plain_form_body_is_edited_like_a_form(tmp_path: Path) -> None:
    config = config_of(tmp_path, "trackers:\n  strip_fields: [umid]\n")
    request = PlainRequest(
        "POST", "https://www.shop.example/b", [("content-type", "text/plain;charset=UTF-8")],
        b"umid=abc123def456&x=1",
    )  # fmt: skip
    assert run(config, request).body == b"x=1"


def test_keep_protects_names_from_field_rules_and_ignores_header_case(tmp_path: Path) -> None:
    config = config_of(
        tmp_path,
        """\
        tracking_ids: {cookies: [visitor], headers: [x-umid]}
        trackers:
          strip_headers: ["/^x-/"]
        fields:
          tracking_id: strip
        allow:
          - match: "api.shop.example/*"
            keep: [visitor, X-Umid]
        """,
    )
    headers = [("cookie", "visitor=Zm9vYmFyYmF6"), ("X-Umid", "T2gA1234abcd")]
    outcome = run(config, PlainRequest("GET", "https://api.shop.example/v", headers))
    assert outcome.actions == [] and not outcome.changed


def test_strip_fields_never_strips_a_query_parameter(tmp_path: Path) -> None:
    config = config_of(tmp_path, "trackers:\n  strip_fields: [id]\n")
    request = PlainRequest("GET", "https://www.shop.example/item.htm?id=680000000001")
    assert run(config, request).actions == []


def test_json_that_would_not_survive_re_encoding_is_left_alone(tmp_path: Path) -> None:
    config = config_of(tmp_path, "trackers:\n  strip_fields: [umid]\n")
    for text in ('{"umid":"1","d":1,"d":2}', '{"umid":"1","big":1e400}'):
        request = PlainRequest("POST", "https://www.shop.example/x", [], text.encode())
        assert not run(config, request).changed


def test_a_urlencoded_value_is_replaced_encoded_again(tmp_path: Path) -> None:
    config = config_of(tmp_path, "fields:\n  phone: replace\n")
    request = PlainRequest("GET", "https://www.shop.example/p?mobile=%2B8613912345678")
    outcome = run(config, request)
    (action,) = outcome.actions
    assert action.applied, action.reason
    sent = decode_twice(urlsplit(outcome.url).query.partition("=")[2])
    assert sent.startswith("+86") and sent != "+8613912345678"
    assert phonenumbers.is_valid_number(phonenumbers.parse(sent))


def decode_twice(text: str) -> str:
    from urllib.parse import unquote

    return unquote(unquote(text))


def test_on_uninspected_block_covers_partial_inspection(tmp_path: Path) -> None:
    config = config_of(tmp_path, "on_uninspected: block\n")
    request = PlainRequest("POST", "https://www.shop.example/u", [], b"\x00\x01\x02" * 100)
    outcome = run(config, request)
    assert [(a.action, a.reason) for a in outcome.actions] == [
        ("block", "the request could not be fully inspected (partial)")
    ]


def test_json_inside_a_json_string_is_edited_and_written_back_as_a_string(tmp_path: Path) -> None:
    config = config_of(tmp_path, "trackers:\n  strip_fields: [umid]\nfields:\n  phone: replace\n")
    params = json.dumps({"receiverMobile": "13912345678", "umid": "T2gA", "n": 1})
    form = "data=" + quote(json.dumps({"params": params, "itemId": "1"}))
    request = PlainRequest(
        "POST",
        "https://www.shop.example/h5/x",
        [("content-type", "application/x-www-form-urlencoded")],
        form.encode(),
    )
    outcome = run(config, request)
    assert {(a.action, a.target, a.applied) for a in outcome.actions} == {
        ("strip", "body.form:data.$.params.$.umid", True),
        ("replace", "body.form:data.$.params.$.receiverMobile", True),
    }
    data = json.loads(dict(parse_qsl((outcome.body or b"").decode()))["data"])
    inner = json.loads(data["params"])
    assert set(inner) == {"receiverMobile", "n"} and data["itemId"] == "1"
    assert inner["receiverMobile"] != "13912345678"
    assert phonenumbers.is_valid_number(phonenumbers.parse(inner["receiverMobile"], "CN"))


def test_a_parameter_of_a_url_inside_a_parameter_or_the_referer_is_edited(tmp_path: Path) -> None:
    config = config_of(tmp_path, "fields:\n  phone: replace\n  email: strip\n")
    target = quote("https://login.shop.example/m?mobile=13912345678&from=a", safe="")
    request = PlainRequest(
        "GET",
        f"https://www.shop.example/p?r={target}",
        [("referer", "https://www.shop.example/s?q=bag&email=wang%40example.com")],
    )
    outcome = run(config, request)
    assert {(a.action, a.target, a.applied) for a in outcome.actions} == {
        ("replace", "query:r.mobile", True),
        ("strip", "header:referer.email", True),
    }
    redirect = dict(parse_qsl(urlsplit(outcome.url).query))["r"]
    inner = dict(parse_qsl(urlsplit(redirect).query))
    assert redirect.startswith("https://login.shop.example/m?")
    assert inner["from"] == "a" and inner["mobile"] != "13912345678"
    assert ("referer", "https://www.shop.example/s?q=bag") in outcome.headers


def multipart_post(url: str, fields: list[tuple[str, str | None, bytes]]) -> PlainRequest:
    """A multipart/form-data POST as a browser sends FormData: (name, file name, content)."""
    boundary = "----WebKitFormBoundaryx8Yq2TB3XqKj7dVZ"
    chunks = []
    for name, filename, content in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        kind = "\r\nContent-Type: image/png" if filename else ""
        chunks.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}{kind}\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    headers = [("content-type", f"multipart/form-data; boundary={boundary}")]
    return PlainRequest("POST", url, headers, body)


def test_multipart_form_fields_are_stripped_and_replaced_in_place(policy: Config) -> None:
    """FormData posts: text parts are edited, everything else leaves byte for byte."""
    png = b"\x89PNG\r\n\x1a\n\x00\x00binary\r\n--not-a-boundary"
    request = multipart_post(
        "https://t.track.example/collect",
        [
            ("umid", None, b"T123"),
            ("email", None, b"wang.xiaoming@example.com"),
            ("mobile", None, b"13912345678"),
            ("data", None, b'{"umid": "T9", "keep": 1}'),
            ("avatar", "me.png", png),
            ("note", None, "请尽快发货".encode()),
        ],
    )
    outcome = run(policy, request)
    assert sorted(summary(outcome)) == [
        ("replace", "body.form:mobile", True),
        ("strip", "body.form:data.$.umid", True),
        ("strip", "body.form:email", True),
        ("strip", "body.form:umid", True),
    ]
    assert outcome.body is not None
    sent = read_multipart(outcome.body, request.header("content-type") or "")
    assert sent is not None
    fields = {part.disposition[0]: part.content for part in sent.parts}
    assert set(fields) == {"mobile", "data", "avatar", "note"}
    assert fields["avatar"] == png and fields["note"] == "请尽快发货".encode()
    assert json.loads(fields["data"]) == {"keep": 1}
    assert fields["mobile"] != b"13912345678" and len(fields["mobile"]) == 11
    untouched = run(policy, multipart_post("https://t.track.example/c", [("note", None, b"hi")]))
    assert untouched.actions == [] and untouched.body is None


def test_json_in_a_part_without_a_name_is_edited(policy: Config) -> None:
    """multipart/related sends a JSON part with no field name: its fields are found at
    `body.form:$…` and edited there, by field rules and strip_fields alike."""
    body = (
        b"--b\r\nContent-Type: application/json\r\n\r\n"
        b'{"umid": "T9", "email": "wang.xiaoming@example.com", "n": 1}\r\n--b--\r\n'
    )
    ct = [("content-type", "multipart/related; boundary=b")]
    outcome = run(policy, PlainRequest("POST", "https://api.shop.example/x", ct, body))
    assert sorted(summary(outcome)) == [
        ("strip", "body.form:$.email", True),
        ("strip", "body.form:$.umid", True),
    ]
    assert outcome.body == b'--b\r\nContent-Type: application/json\r\n\r\n{"n":1}\r\n--b--\r\n'


def test_json_nested_too_deep_to_write_back_is_not_edited(policy: Config, tmp_path: Path) -> None:
    """Nothing in a request may make the engine raise: a document nested a thousand levels
    deep is partially inspected (on_uninspected decides) and never edited."""
    body = b'{"umid": "T9", "email": "wang.xiaoming@example.com", "a": '
    body += b"[" * 1000 + b"]" * 1000 + b"}"
    ct = [("content-type", "application/json")]
    request = PlainRequest("POST", "https://api.shop.example/x", ct, body)
    (action,) = run(policy, request).actions
    assert (action.action, action.target, action.applied) == ("block", "request", True)
    lenient = config_of(tmp_path, "trackers: {strip_fields: [umid]}\nfields: {email: strip}\n")
    outcome = run(lenient, request)
    assert [(a.target, a.applied) for a in outcome.actions] == [("body:$.email", False)]
    assert outcome.body is None


def test_a_field_sent_twice_gets_a_stand_in_for_each_value(policy: Config) -> None:
    """`mobile=0&mobile=<phone>`: the phone is replaced although the first value is no phone,
    and two phones get two stand-ins, in a query and in multipart alike."""
    query = run(
        policy, PlainRequest("GET", "https://t.track.example/p?mobile=0&mobile=13912345678")
    )
    assert summary(query) == [("replace", "query:mobile", True)]
    sent = [v for k, v in parse_qsl(urlsplit(query.url).query) if k == "mobile"]
    assert sent[0] == "0" and sent[1] != "13912345678" and len(sent[1]) == 11
    both = multipart_post(
        "https://t.track.example/c",
        [("mobile", None, b"13912345678"), ("mobile", None, b"13800138000")],
    )
    outcome = run(policy, both)
    assert summary(outcome) == [("replace", "body.form:mobile", True)]
    assert outcome.body is not None
    sent_parts = read_multipart(outcome.body, both.header("content-type") or "")
    assert sent_parts is not None
    values = [part.content for part in sent_parts.parts]
    assert b"13912345678" not in values and b"13800138000" not in values
    assert values[0] != values[1]


def test_names_with_reserved_characters_are_stripped(tmp_path: Path) -> None:
    """`utm.source`, `utm[medium]`, a cookie `connect.sid`: strip rules act on them, and the
    action's target writes the name escaped (README, *Locations*)."""
    config = config_of(
        tmp_path,
        'trackers:\n  strip_params: ["/^utm/", "x y"]\n  strip_cookies: [connect.sid]\n',
    )
    url = "https://www.shop.example/s?q=1&utm.source=x&utm[medium]=y&x%20y=2"
    outcome = run(config, PlainRequest("GET", url, [("Cookie", "connect.sid=abc; other=2")]))
    assert summary(outcome) == [
        ("strip", "query:utm%2Esource", True),
        ("strip", "query:utm%5Bmedium%5D", True),
        ("strip", "query:x%20y", True),
        ("strip", "cookie:connect%2Esid", True),
    ]
    assert outcome.url == "https://www.shop.example/s?q=1"
    assert ("Cookie", "other=2") in outcome.headers


def test_a_value_inside_a_path_segment_is_not_edited_in_place(tmp_path: Path) -> None:
    config = config_of(tmp_path, "fields:\n  phone: strip\n")
    url = "https://www.shop.example/p/mobile=13912345678&x=1/y"
    outcome = run(config, PlainRequest("GET", url))
    (action,) = outcome.actions
    assert not action.applied and "path segment" in (action.reason or "")
    assert outcome.url == url  # left as it came, and the log says so


def test_what_a_response_sets_is_reported_not_acted_on(tmp_path: Path) -> None:
    """A `set-cookie:` finding was received, not sent: no rule blocks or strips the request
    for it (as the proxy, which sees responses after their requests left)."""
    config = config_of(tmp_path, "tracking_ids: {cookies: [cna]}\nfields:\n  tracking_id: block\n")
    request = PlainRequest(
        "GET",
        "https://www.shop.example/x",
        response_headers=[("Set-Cookie", "cna=Zm9vYmFyYmF6cXV4; Path=/")],
    )
    result = evaluate(config, request)
    assert [(f.category, f.location) for f in result.findings] == [
        ("tracking_id", "set-cookie:cna")
    ]
    assert result.outcome.actions == [] and result.outcome.block_status is None
