"""The cost of one request grows with its size, never with its size squared: a request of tens
of thousands of parameters, fields, cookies or headers must not freeze the proxy (one event loop
serves every site). Work is counted, not timed: every jump the interpreter takes in Python code
(each turn of a loop ends with one), through `sys.monitoring`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from shopguard.engine import pipeline
from shopguard.engine.detect import Detector
from shopguard.engine.extract import clear_caches
from shopguard.engine.known_values import KnownMatcher, load_profile
from shopguard.engine.request import PlainRequest
from shopguard.engine.settings import load_config

SITE = """\
hosts: ["*.shop.example"]
first_party: ["*.shop.example"]
mode: enforce
trackers:
  strip_fields: [umidToken]
  strip_params: [spm, "/^s[0-9]+$/"]
  strip_cookies: {"*.shop.example": ["/^c[0-9]+$/"]}
  strip_headers: ["/^x-s[0-9]+$/"]
fields:
  phone: strip
  email: replace
"""
PROFILE = 'phone: ["+86 138 0013 8000"]\nemail: [wang.xiaoming@example.com]\nname: [王小明]\n'
PHONE, EMAIL = "13800138000", "wang.xiaoming@example.com"
URL = "https://www.shop.example/x"
FORM = [("content-type", "application/x-www-form-urlencoded")]
JSON_TYPE = [("content-type", "application/json")]


@pytest.fixture
def ctx(tmp_path: Path) -> pipeline.Context:
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "shop.yaml").write_text(SITE, encoding="utf-8")
    (tmp_path / "profile.yaml").write_text(PROFILE, encoding="utf-8")
    config = load_config(tmp_path, None)
    detector = Detector(b"k" * 32, KnownMatcher(load_profile(tmp_path / "profile.yaml")))
    return pipeline.Context(config, detector)


@contextmanager
def counted() -> Iterator[list[int]]:
    """The jumps taken in Python code inside the block (in `count[0]`)."""
    monitoring = sys.monitoring
    tool = next(i for i in range(6) if monitoring.get_tool(i) is None)
    count = [0]

    def step(*_: Any) -> None:
        count[0] += 1

    monitoring.use_tool_id(tool, "shopguard-work-count")
    monitoring.register_callback(tool, monitoring.events.JUMP, step)
    monitoring.set_events(tool, monitoring.events.JUMP)
    try:
        yield count
    finally:
        monitoring.set_events(tool, 0)
        monitoring.register_callback(tool, monitoring.events.JUMP, None)
        monitoring.free_tool_id(tool)


def work(ctx: pipeline.Context, request: PlainRequest) -> int:
    """The work of one request seen for the first time (no value remembered from before)."""
    clear_caches()
    ctx.detector = Detector(ctx.detector.secret, ctx.detector.matcher)
    with counted() as count:
        pipeline.run(ctx, request)
    return count[0]


def pairs(n: int, tag: str, value: Callable[[int], str], name: str = "p") -> str:
    return "&".join(f"{name}{tag}{i}={value(i)}" for i in range(n))


def multipart(n: int, tag: str) -> PlainRequest:
    parts = "".join(
        f'--BB\r\nContent-Disposition: form-data; name="p{tag}{i}"\r\n\r\nv{i}\r\n'
        for i in range(n)
    )
    kind = [("content-type", "multipart/form-data; boundary=BB")]
    return PlainRequest("POST", URL, kind, f"{parts}--BB--\r\n".encode())


# (what the request is made of, how to make one of n of them; `tag` keeps names and values of
# the two sizes apart, so that nothing of the smaller one is remembered for the larger)
SHAPES: dict[str, Callable[[int, str], PlainRequest]] = {
    "query parameters, with a strip_fields rule": lambda n, t: PlainRequest(
        "GET", f"{URL}?{pairs(n, t, lambda i: f'v{i}')}"
    ),
    "query parameters a regex strip_params rule strips": lambda n, t: PlainRequest(
        "GET", f"{URL}?{pairs(n, t, lambda i: f'v{i}', 's')}"
    ),
    "query parameters holding JSON": lambda n, t: PlainRequest(
        "GET", f"{URL}?{pairs(n, t, lambda i: quote(json.dumps({'umidToken': i})))}"
    ),
    "form fields": lambda n, t: PlainRequest(
        "POST", URL, FORM, pairs(n, t, lambda i: f"v{i}").encode()
    ),
    "multipart fields": multipart,
    "JSON keys": lambda n, t: PlainRequest(
        "POST", URL, JSON_TYPE, json.dumps({f"p{t}{i}": f"v{i}" for i in range(n)}).encode()
    ),
    "cookies a rule strips": lambda n, t: PlainRequest(
        "GET", URL, [("cookie", "; ".join(f"c{t}{i}=v{i}" for i in range(n)))]
    ),
    "Cookie headers": lambda n, t: PlainRequest(
        "GET", URL, [("cookie", f"c{t}{i}=v{i}") for i in range(n)]
    ),
    "headers a rule strips": lambda n, t: PlainRequest(
        "GET", URL, [(f"x-s{t}{i}", f"v{i}") for i in range(n)]
    ),
    "phone numbers in parameters": lambda n, t: PlainRequest(
        "GET", f"{URL}?{pairs(n, t, lambda i: PHONE)}"
    ),
    "stripped parameters holding phone numbers": lambda n, t: PlainRequest(
        "GET", f"{URL}?{pairs(n, t, lambda i: PHONE, 's')}"
    ),
    "phone numbers in a Referer's parameters": lambda n, t: PlainRequest(
        "GET", URL, [("referer", f"{URL}?{pairs(n, t, lambda i: PHONE)}")]
    ),
    "e-mail addresses as parameter names": lambda n, t: PlainRequest(
        "GET", f"{URL}?" + "&".join(f"{EMAIL}{t}{i}=1" for i in range(n))
    ),
    "a name repeated in a text body": lambda n, t: PlainRequest(
        "POST", URL, [("content-type", "text/plain")], f"{t} 王小明".encode() * n
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_twice_the_items_cost_at_most_about_twice_the_work(
    ctx: pipeline.Context, shape: str
) -> None:
    make = SHAPES[shape]
    work(ctx, make(50, "w"))  # (what is built once per process: built before counting)
    small, large = work(ctx, make(1000, "a")), work(ctx, make(2000, "b"))
    assert large <= 2.5 * small, f"{shape}: {small} -> {large} steps"


def test_forty_thousand_query_parameters_and_form_fields_are_edited_as_before(
    ctx: pipeline.Context,
) -> None:
    """The README's `strip_fields` example on a request of 40,000 parameters and 40,000 form
    fields: the same fields are stripped as in a small one, and what is not stripped leaves as
    it came, to the byte."""
    data = quote(json.dumps({"umidToken": "T1", "mobile": PHONE}, separators=(",", ":")))
    query = [f"p{i}=v{i}" for i in range(40_000)]
    query[100], query[200], query[300] = "spm=a1.b2", f"data={data}", f"tel={PHONE}"
    form = [f"f{i}=w{i}" for i in range(40_000)]
    form[30_000] = "umidToken=T2"  # past the fields detection reads: stripped by its name
    request = PlainRequest("POST", f"{URL}?{'&'.join(query)}", FORM, "&".join(form).encode())
    ctx.mode = "enforce"
    result = pipeline.run(ctx, request)

    assert [(a.action, a.target, a.applied) for a in result.outcome.actions] == [
        ("strip", "query:spm", True),
        ("strip", "query:data.$.umidToken", True),
        ("strip", "body.form:umidToken", True),
        ("strip", "query:data.$.mobile", True),
        ("strip", "query:tel", True),
    ]
    assert [(f.category, f.location) for f in result.findings] == [
        ("phone", "query:data.$.mobile"),
        ("phone", "query:tel"),
    ]
    kept = [p for i, p in enumerate(query) if i not in (100, 300)]
    kept[199] = "data=%7B%7D"  # (its JSON written back without the two keys)
    assert result.outcome.url == f"{URL}?{'&'.join(kept)}"
    assert result.outcome.body == "&".join(f for i, f in enumerate(form) if i != 30_000).encode()


def test_a_typical_request_is_edited_as_before(ctx: pipeline.Context) -> None:
    body = {"receiver": {"mobile": PHONE, "mail": EMAIL}, "umidToken": "T", "items": [1, 2]}
    request = PlainRequest(
        "POST",
        f"{URL}?spm=a.b&q=shoes&data={quote(json.dumps({'umidToken': 'T', 'n': 1}))}",
        [("referer", f"{URL}?tel={PHONE}&q=1"), ("cookie", "c1=1; keep=2"), *JSON_TYPE],
        json.dumps(body).encode(),
    )
    result = pipeline.run(ctx, request)
    assert sorted((a.action, a.target, a.applied) for a in result.outcome.actions) == [
        ("replace", "body:$.receiver.mail", True),
        ("strip", "body:$.receiver.mobile", True),
        ("strip", "body:$.umidToken", True),
        ("strip", "cookie:c1", True),
        ("strip", "header:referer.tel", True),
        ("strip", "query:data.$.umidToken", True),
        ("strip", "query:spm", True),
    ]
    assert result.outcome.url == f"{URL}?q=shoes&data=%7B%22n%22%3A1%7D"
    headers = dict(result.outcome.headers)
    assert (headers["referer"], headers["cookie"]) == (f"{URL}?q=1", "keep=2")
    sent = json.loads(result.outcome.body or b"")
    assert sent["items"] == [1, 2] and "umidToken" not in sent
    assert "mobile" not in sent["receiver"] and sent["receiver"]["mail"] != EMAIL


def test_a_cookie_header_after_a_stripped_header_keeps_its_cookies(
    ctx: pipeline.Context,
) -> None:
    request = PlainRequest("GET", URL, [("x-s1", "1"), ("cookie", "a=1; c1=2"), ("cookie", "b=3")])
    result = pipeline.run(ctx, request)
    assert result.outcome.headers == [("cookie", "a=1"), ("cookie", "b=3")]


def test_items_of_a_json_array_in_a_header_are_stripped_where_they_were_found(
    ctx: pipeline.Context,
) -> None:
    """Positions are those of the request as it came: stripping the first item does not make
    the second one the first."""
    value = json.dumps({"a": [PHONE, PHONE, 1]})
    result = pipeline.run(ctx, PlainRequest("GET", URL, [("x-data", value)]))
    assert [a.target for a in result.outcome.actions] == [
        "header:x-data.$.a[0]",
        "header:x-data.$.a[1]",
    ]
    assert result.outcome.headers == [("x-data", '{"a":[1]}')]
