"""Extraction: every location a value travels, decoded, with its location string."""

from __future__ import annotations

import base64
import gc
import gzip
import json
from urllib.parse import quote

import brotli
import pytest

from shopguard.engine.extract import Limits, extract, extract_message
from shopguard.engine.request import PlainRequest


def fields(request: PlainRequest, limits: Limits | None = None) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for field in extract(request, limits).fields:
        found.setdefault(field.location, []).append(field.value)
    return found


def transforms(request: PlainRequest) -> dict[tuple[str, str], str]:
    return {(f.location, f.value): f.transform for f in extract(request).fields}


def test_mtop_data_json_inside_the_query() -> None:
    data = quote(json.dumps({"shipTo": {"mobileNo": "13800138000", "tags": ["a", 7]}}))
    got = fields(PlainRequest("GET", f"https://h5api.m.taobao.com/h5/x/1.0/?appKey=1&data={data}"))
    assert got["query:data.$.shipTo.mobileNo"] == ["13800138000"]
    assert got["query:data.$.shipTo.tags[0]"] == ["a"]
    assert got["query:data.$.shipTo.tags[1]"] == ["7"]
    assert got["query:appKey"] == ["1"]
    assert got["path:0"] == ["h5"] and got["path:2"] == ["1.0"]
    assert "query:data" not in got  # the container is replaced by its leaves


def test_headers_cookies_referer_and_set_cookie() -> None:
    request = PlainRequest(
        "GET",
        "https://www.temu.com/",
        [
            ("Cookie", "api_uid=CkAbc123; _nano_fp=XpEonpdaX0Ux"),
            ("Referer", "https://www.temu.com/search?q=bag&email=a%40b.example"),
            ("anti-content", "0aqAfxnUmcK"),
            ("Host", "www.temu.com"),
        ],
        b"",
        response_headers=[("Set-Cookie", "verifyAuthToken=zzz123456; Path=/; HttpOnly")],
    )
    got = fields(request)
    assert got["cookie:api_uid"] == ["CkAbc123"]
    assert got["cookie:_nano_fp"] == ["XpEonpdaX0Ux"]
    assert got["header:referer.email"] == ["a@b.example"]
    assert got["header:anti-content"] == ["0aqAfxnUmcK"]
    assert got["set-cookie:verifyAuthToken"] == ["zzz123456"]
    assert "header:host" not in got


def test_recurring_headers_and_cookies_read_the_same_every_time() -> None:
    """Cookie headers, cookies and Referers are remembered once read; a second request, and a
    Referer or Cookie header too long to remember, must give the same fields."""
    long_state = "x" * 5000
    for referer, cookie in (
        ("https://a.example/p?email=a%40b.example", "cna=Zm9vYmFyYmF6cXV4; t=1"),
        (f"https://a.example/p?s={long_state}&email=a%40b.example", f"big={long_state}; t=1"),
    ):
        request = PlainRequest(
            "GET", "https://a.example/", [("Referer", referer), ("Cookie", cookie)]
        )
        first, second = fields(request), fields(request)
        assert first == second
        assert first["header:referer.email"] == ["a@b.example"]
        assert first["cookie:t"] == ["1"]


def test_json_body_urlencoded_body_and_text_body() -> None:
    body = json.dumps({"address": {"fullName": "Ann", "zip": 10001}}).encode()
    got = fields(PlainRequest("POST", "https://a/", [("content-type", "application/json")], body))
    assert got["body:$.address.fullName"] == ["Ann"]
    assert got["body:$.address.zip"] == ["10001"]
    form = b"cardNumber=4111+1111+1111+1111&note=hi%20there"
    ct = [("content-type", "application/x-www-form-urlencoded")]
    got = fields(PlainRequest("POST", "https://a/", ct, form))
    assert got["body.form:cardNumber"] == ["4111 1111 1111 1111"]
    assert got["body.form:note"] == ["hi there"]
    got = fields(PlainRequest("POST", "https://a/", [("content-type", "text/plain")], b"call me"))
    assert got["body.text"] == ["call me"]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_json_bodies_with_a_byte_order_mark_or_in_utf16(encoding: str) -> None:
    """Some Windows and .NET clients send JSON with a BOM, or UTF-16 (both allowed by RFC 8259
    readers): their fields are read like any other JSON body's."""
    body = json.dumps({"receiver": {"mobile": "13800138000"}}).encode(encoding)
    for content_type in ("application/json", "text/plain"):
        ct = [("content-type", content_type)]
        got = fields(PlainRequest("POST", "https://a/", ct, body))
        assert got["body:$.receiver.mobile"] == ["13800138000"]


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ('{"receiver": {"mobile": "13800138000"}}\x1e', "body:$.receiver.mobile"),  # SignalR
        ('\x1e{"receiver": {"mobile": "13800138000"}}', "body:$.receiver.mobile"),  # json-seq
        ("收货人\u3000张三\u00a0电话 13800138000", "body.text"),  # ideographic, no-break space
    ],
)
def test_text_bodies_with_separators_and_wide_spaces_are_read(body: str, location: str) -> None:
    """Short bodies with a record separator or a wide space are text, not binary."""
    for content_type in ("text/plain", "application/json"):
        request = PlainRequest(
            "POST", "https://a/", [("content-type", content_type)], body.encode()
        )
        extraction = extract(request)
        assert extraction.inspection == "full"
        assert location in {f.location for f in extraction.fields}


def test_encoded_surrogates_in_a_json_body_are_not_text() -> None:
    """UTF-8 bytes of a surrogate are invalid UTF-8: such a body is binary (the redactor could
    not edit it), even though json.loads on the bytes would accept it."""
    body = b'{"email": "wang.xiaoming@example.com", "n": "\xed\xa0\x80"}'
    request = PlainRequest("POST", "https://a/", [("content-type", "application/json")], body)
    extraction = extract(request)
    assert extraction.inspection == "partial" and extraction.problems == ["a binary body"]


def test_multipart_delimiters_start_lines_and_headers_end_at_the_first_blank_line() -> None:
    """`--boundary` inside a value is not a delimiter (RFC 2046), and a value may hold a blank
    line of the other style: servers read the parts so, and so must shopguard."""
    body = (
        b'--b\r\nContent-Disposition: form-data; name="note"\r\n\r\nsee --b-- here\r\n'
        b'--b\nContent-Disposition: form-data; name="msg"\n\nline\r\n\r\nnext\n'
        b'--b\r\nContent-Disposition: form-data; name="email"\r\n\r\nwang@example.com\r\n'
        b"--b--\r\n"
    )
    ct = [("content-type", "multipart/form-data; boundary=b")]
    got = fields(PlainRequest("POST", "https://a/", ct, body))
    assert got["body.form:note"] == ["see --b-- here"]
    assert got["body.form:msg"] == ["line\r\n\r\nnext"]
    assert got["body.form:email"] == ["wang@example.com"]


def test_multipart_text_parts_and_file_parts_by_name_only() -> None:
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="comment"\r\n\r\ntel 13800138000\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="photo"; filename="me.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0secret-bytes\r\n--XyZ--\r\n"
    )
    headers = [("content-type", "multipart/form-data; boundary=XyZ")]
    got = fields(PlainRequest("POST", "https://a/", headers, body))
    assert got["body.form:comment"] == ["tel 13800138000"]
    assert got["body.file:photo"] == ["me.jpg"]
    assert not any("secret-bytes" in v for values in got.values() for v in values)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("br", brotli.compress), ("deflate", None)],
)
def test_compressed_bodies(encoding: str, compress: object) -> None:
    import zlib

    raw = json.dumps({"mobile": "13800138000"}).encode()
    body = zlib.compress(raw) if compress is None else compress(raw)  # type: ignore[operator]
    headers = [("content-type", "application/json"), ("content-encoding", encoding)]
    extraction = extract(PlainRequest("POST", "https://a/", headers, body))
    assert [f.value for f in extraction.fields if f.location == "body:$.mobile"] == ["13800138000"]
    assert extraction.inspection == "full"


def test_encoding_layers_are_undone_and_named() -> None:
    inner = json.dumps({"phone": "13800138000"})
    b64 = base64.b64encode(inner.encode()).decode()
    url = (
        f"https://a/?q={quote(b64)}"
        f"&h={b'wang@example.com'.hex()}"
        f"&u={quote(chr(92) + 'u738b' + chr(92) + 'u5c0f')}"
        f"&twice={quote(quote('a@b.example'))}"
    )
    got = transforms(PlainRequest("GET", url))
    assert got[("query:q.$.phone", "13800138000")] == "base64"
    assert got[("query:h", "wang@example.com")] == "hex"
    assert got[("query:u", "王小")] == "unicode_escape"
    assert got[("query:twice", "a@b.example")] == "urlencode"


def test_three_nested_layers_form_in_base64_in_query() -> None:
    form = "name=" + quote("王小明") + "&mobile=13800138000"
    url = "https://a/?p=" + quote(base64.b64encode(form.encode()).decode())
    got = fields(PlainRequest("GET", url))
    assert got["query:p.mobile"] == ["13800138000"]
    assert got["query:p.name"] == ["王小明"]


def test_guessed_decodings_keep_the_value_as_sent() -> None:
    got = fields(PlainRequest("GET", "https://a/?cna=Zm9vYmFyMTIz"))
    assert got["query:cna"] == ["Zm9vYmFyMTIz", "foobar123"]


@pytest.mark.parametrize(
    ("body", "headers", "problem"),
    [
        (b"\x1f\x8b\x08broken", [("content-encoding", "gzip")], "does not decode as gzip"),
        (bytes(range(256)) * 4, [("content-type", "application/octet-stream")], "binary body"),
        (b"[" * 5000 + b"]" * 5000, [("content-type", "application/json")], "nested too deep"),
    ],
)
def test_bad_bodies_are_partial_with_a_reason(
    body: bytes, headers: list[tuple[str, str]], problem: str
) -> None:
    extraction = extract(PlainRequest("POST", "https://a/?x=1", headers, body))
    assert extraction.inspection == "partial"
    assert any(problem in p for p in extraction.problems), extraction.problems
    assert [f.value for f in extraction.fields if f.location == "query:x"] == ["1"]


def test_streamed_body_is_none_and_caps_are_partial() -> None:
    assert extract(PlainRequest("POST", "https://a/", [], None)).inspection == "none"
    limits = Limits(body_cap=1024)
    big = PlainRequest("POST", "https://a/", [("content-type", "text/plain")], b"x" * 5000)
    extraction = extract(big, limits)
    assert extraction.inspection == "partial"
    assert sum(len(f.value) for f in extraction.fields if f.location == "body.text") == 1024
    many = "&".join(f"p{i}=v{i}" for i in range(3000))
    extraction = extract(PlainRequest("GET", f"https://a/?{many}"), Limits(max_fields=100))
    assert len(extraction.fields) == 100 and extraction.inspection == "partial"


def test_websocket_messages() -> None:
    json_fields = extract_message(b'{"msg": {"tel": "13800138000"}}').fields
    assert [(f.location, f.value) for f in json_fields] == [("ws:$.msg.tel", "13800138000")]
    assert [f.location for f in extract_message("hello there").fields] == ["ws.text"]
    assert extract_message(b"\x00\x01\x02\xff" * 50).inspection == "partial"


def test_padded_base64_of_binary_is_not_read_as_a_form_pair() -> None:
    token = base64.b64encode(bytes(range(190, 254))).decode()  # 64 bytes: a sha512 digest's size
    assert token.endswith("==") or token.endswith("=")
    got = fields(PlainRequest("GET", f"https://a/?ue={quote(token, safe='')}"))
    assert got["query:ue"] == [token]


def test_large_bodies_leave_the_garbage_collector_as_they_found_it() -> None:
    """A large body is read with the cyclic collector paused; the proxy's collector must be
    running again afterwards (and stay off where something else had turned it off)."""
    items = [{"itemId": n, "title": "双肩包", "tags": ["new"]} for n in range(20_000)]
    body = json.dumps({"items": items}).encode()
    request = PlainRequest("POST", "https://a/", [("content-type", "application/json")], body)
    assert gc.isenabled()
    extraction = extract(request)
    assert gc.isenabled()
    assert "body:$.items[0].itemId" in {f.location for f in extraction.fields}
    gc.disable()
    try:
        extract(request)
        assert not gc.isenabled()
    finally:
        gc.enable()
    broken = PlainRequest("POST", "https://a/", [("content-type", "application/json")], body[:-2])
    assert [f.location for f in extract(broken).fields][-1] == "body.text"  # read as text
    assert gc.isenabled()


@pytest.mark.parametrize(
    ("body", "read"),
    [
        (b"plain=ascii&text=1", True),
        (b"tab\tand\r\nnew lines", True),
        (b"a control\x01 in a short body", False),
        ("文字 and ascii".encode(), True),
        (b"\xff\xfe\x00binary", False),
    ],
)
def test_a_text_body_is_read_and_a_binary_one_is_not(body: bytes, read: bool) -> None:
    request = PlainRequest(
        "POST", "https://h5api.m.taobao.com/x", [("content-type", "text/plain")], body
    )
    fields = extract(request).fields
    assert any(f.location.startswith("body") for f in fields) is read
