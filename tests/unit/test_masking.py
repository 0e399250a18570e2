"""What reaches the log: request paths and exception messages with their values masked."""

from __future__ import annotations

import pytest

from shopguard.engine.masking import MASK, mask_host, mask_message, mask_method, mask_path

PHONE = "13800138000"
EMAIL = "wang.xiaoming@example.com"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "/"),
        ("/item.htm", "/item.htm"),
        ("/user/orders/", "/user/orders/"),
        ("/item.htm?id=42", "/item.htm?id=***"),
        (
            "/h5/api/1.0/?jsv=2.7&data=%7B%22phone%22%3A%2213800138000%22%7D",
            "/h5/api/1.0/?jsv=***&data=***",
        ),
        ("/s?q=&page=2", "/s?q=&page=***"),
        ("/s?flag&page=2", "/s?***&page=***"),  # (a bare token is in a value's place)
        ("/s?13800138000=1&p1=2&x=", "/s?***=***&p1=***&x="),
        ("/s?user_13700000000=&spm=", "/s?***=&spm="),
        ("/s?a=1&a=2", "/s?a=***&a=***"),
        ("/s?token=a=b=c", "/s?token=***"),
        ("/s?", "/s?"),
        ("/s?&&q=x", "/s?&&q=***"),
        (f"/s?mobile={PHONE}&email={EMAIL}", "/s?mobile=***&email=***"),
        ("/s?name=%E7%8E%8B%E5%B0%8F%E6%98%8E", "/s?name=***"),
        ("/s?next=/a?b=c", "/s?next=***"),
    ],
)
def test_mask_path_masks_every_query_value(path: str, expected: str) -> None:
    assert mask_path(path) == expected


@pytest.mark.parametrize(
    ("path", "segments", "expected"),
    [
        (f"/user/{PHONE}/orders", {1}, "/user/***/orders"),
        (f"/user/{PHONE}/orders?page=2", {1}, "/user/***/orders?page=***"),
        (f"/{PHONE}", {0}, "/***"),
        (f"//user//{PHONE}/", {1}, "//user//***/"),
        ("/a/b/c", {0, 2}, "/***/b/***"),
        ("/a/b/c", {7}, "/a/b/c"),
    ],
)
def test_mask_path_masks_the_path_segments_named(
    path: str, segments: set[int], expected: str
) -> None:
    assert mask_path(path, segments) == expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("connection reset by peer", "connection reset by peer"),
        (f"'{PHONE}'", f"'{MASK}'"),
        (
            "invalid literal for int() with base 10: 'abc'",
            f"invalid literal for int() with base {MASK}: '{MASK}'",
        ),
        ('no field "receiverName" in order', f'no field "{MASK}" in order'),
        ("order 12345 failed", f"order {MASK} failed"),
        (f"unknown user {EMAIL}", f"unknown user {MASK}"),
        ("收货人 王小明 not found", f"{MASK} {MASK} not found"),
        (  # mitmproxy quotes the bytes it choked on; the protocol's name stays
            f"HTTP/1 protocol error: illegal chunk header: bytearray(b'mobile={PHONE}')",
            f"HTTP/1 protocol error: illegal chunk header: bytearray(b'{MASK}')",
        ),
        ("HTTP/2 stream reset (received 10 bytes)", f"HTTP/2 stream reset (received {MASK} bytes)"),
    ],
)
def test_mask_message(message: str, expected: str) -> None:
    assert mask_message(message) == expected


@pytest.mark.parametrize(
    "message",
    [
        PHONE,
        f"KeyError: '{PHONE}'",
        f"ValueError: {PHONE}",
        f"bad phone number +86{PHONE} in body",
        "bad phone number +86 138 0013 8000 in body",
        "bad phone number 138-0013-8000",
        f"bad value: mobile={PHONE}&name=x",
        f"{{'mobile': '{PHONE}'}}",
        f'json: {{"mobile":"{PHONE}"}}',
        f"cannot parse {EMAIL}",
        f"cannot parse <{EMAIL}>",
        f"cannot parse mailto:{EMAIL}",
        f"KeyError: '{EMAIL}'",
        "KeyError: 'Wang Xiaoming'",
        "address 北京市海淀区学院路38号 rejected",
        f"multi\nline\n'{PHONE}\nstill quoted'",
    ],
)
def test_personal_values_never_survive(message: str) -> None:
    masked = mask_message(message)
    for value in (PHONE, "13800138000"[3:], "0013", EMAIL, "example.com", "Wang", "王小明", "海淀"):
        assert value not in masked


def test_a_long_quoted_value_is_masked_whole() -> None:
    message = "ValueError: cannot decode '" + "Wang Xiaoming, Xueyuan Road, Beijing " * 80 + "'"
    masked = mask_message(message)
    assert "Wang" not in masked and "Xueyuan" not in masked


@pytest.mark.parametrize("limit", [20, 100, 300])
def test_mask_message_bounds_the_length(limit: int) -> None:
    masked = mask_message("word " * 1000, limit=limit)
    assert len(masked) <= limit
    assert masked.startswith("word word")


def test_default_limit_is_a_few_hundred_characters() -> None:
    assert len(mask_message("x " * 1000)) <= 300
    assert len(mask_message("x" * 1000)) <= 300
    assert mask_message("short") == "short"


@pytest.mark.parametrize(
    ("host", "labels", "expected"),
    [
        ("h5api.m.taobao.com", set(), "h5api.m.taobao.com"),
        ("img11.360buyimg.com:443", set(), "img11.360buyimg.com:443"),
        ("xn--fiqs8s.taobao.com", set(), "xn--fiqs8s.taobao.com"),
        ("13800138000.shop.example", {0}, "***.shop.example"),
        ("13800138000.taobao.com", set(), "***.taobao.com"),  # (a long run of digits)
        ("王小明.taobao.com", set(), "***.taobao.com"),
        ("wang.xiaoming@example.com.taobao.com", set(), "wang.***.com.taobao.com"),
        ("s.taobao.com:13800138000", set(), "s.taobao.com:***"),
        ("s.taobao.com:abc", set(), "s.taobao.com:***"),
    ],
)
def test_mask_host_masks_labels_named_and_labels_no_dns_name_has(
    host: str, labels: set[int], expected: str
) -> None:
    assert mask_host(host, labels) == expected


@pytest.mark.parametrize(
    ("method", "expected"),
    [("GET", "GET"), ("PROPFIND", "PROPFIND"), ("WANG13800138000", MASK), ("get", MASK)],
)
def test_mask_method_keeps_standard_methods_only(method: str, expected: str) -> None:
    assert mask_method(method) == expected
