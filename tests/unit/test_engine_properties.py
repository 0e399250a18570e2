"""Property-based tests: no input makes the engine raise, and its work stays bounded."""

from __future__ import annotations

import json
from urllib.parse import unquote, unquote_plus, urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopguard.engine import decode
from shopguard.engine.body import read_multipart
from shopguard.engine.detect import Detector
from shopguard.engine.extract import Limits, extract, extract_message, split_url
from shopguard.engine.known_values import KnownMatcher, Profile, normalise
from shopguard.engine.request import PlainRequest

LIMITS = Limits(body_cap=64 * 1024, max_fields=500)
PROFILE_FORMS = [
    ("phone", "+86 138 0013 8000"),
    ("email", "wang.xiaoming@example.com"),
    ("name", "王小明"),
]


def _detector() -> Detector:
    values, forms = [], []
    from shopguard.engine.known_values import KnownValue

    for category, raw in PROFILE_FORMS:
        normalised = normalise(category, raw, "CN")
        assert normalised
        values.append(KnownValue(category, normalised[0][0]))
        forms += [(form, len(values) - 1, True) for _, form, part in normalised if not part]
    return Detector(b"secret", KnownMatcher(Profile("CN", tuple(values), tuple(forms))))


DETECTOR = _detector()
header_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=40,
)


def _check(request: PlainRequest) -> None:
    extraction = extract(request, LIMITS)
    assert extraction.inspection in ("full", "partial", "none")
    assert len(extraction.fields) <= LIMITS.max_fields
    for finding in DETECTOR.detect(extraction, "h5api.m.taobao.com"):
        assert 0 <= finding.confidence <= 1
        assert finding.value is None  # raw values only when the user asks


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "\x00"]),
    url=st.text(max_size=300),
    headers=st.lists(st.tuples(header_text, header_text), max_size=8),
    body=st.binary(max_size=4096),
)
def test_arbitrary_requests_never_raise(
    method: str, url: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    _check(PlainRequest(method, url, headers, body))


@settings(max_examples=100, deadline=None)
@given(
    document=json_values,
    content_type=st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "text/plain", ""]
    ),
    encoding=st.sampled_from(["", "gzip", "br", "deflate", "zstd", "gzip, br"]),
)
def test_arbitrary_json_bodies_never_raise(
    document: object, content_type: str, encoding: str
) -> None:
    headers = [("content-type", content_type)] + (
        [("content-encoding", encoding)] if encoding else []
    )
    body = json.dumps(document).encode()
    _check(PlainRequest("POST", "https://h5api.m.taobao.com/h5/x/1.0/", headers, body))


@settings(max_examples=100, deadline=None)
@given(message=st.binary(max_size=2048) | st.text(max_size=2048))
def test_arbitrary_websocket_messages_never_raise(message: bytes | str) -> None:
    extraction = extract_message(message, LIMITS)
    DETECTOR.detect(extraction)


def test_pathological_inputs_are_bounded() -> None:
    deep = b"[" * 10_000 + b"]" * 10_000
    many = "&".join(f"p{i}={i}" for i in range(100_000))
    cases = [
        PlainRequest("POST", "https://a.taobao.com/", [("content-type", "application/json")], deep),
        PlainRequest("GET", f"https://a.taobao.com/?{many}"),
        PlainRequest(
            "POST", "https://a.taobao.com/", [("content-encoding", "gzip")], b"\x1f\x8bxx"
        ),
        PlainRequest("POST", "https://a.taobao.com/", [], b"A" * (LIMITS.body_cap * 4)),
    ]
    for request in cases:
        extraction = extract(request, LIMITS)
        assert extraction.inspection == "partial", extraction.problems
        assert len(extraction.fields) <= LIMITS.max_fields


# pieces that stress percent-decoding: escapes in both cases, lone and doubled %, literal = (the
# fast path rewrites %XX as quoted-printable =XX), line breaks (=CRLF is a quoted-printable soft
# break), non-ASCII text
_percent_pieces = st.sampled_from(
    [
        *"%=+aF0 9\n\r_xé李\t",
        *("%e6", "%9D", "%8E", "%3D", "%3d", "%0A", "%0D%0A", "%zz", "%2", "%%", "%E6%9D%8E"),
        *("=3D", "=\n", "=\r\n"),
    ]
)


@settings(max_examples=2000, deadline=None)
@given(text=st.lists(_percent_pieces, max_size=30).map("".join), plus=st.booleans())
def test_percent_decoding_agrees_with_urllib(text: str, plus: bool) -> None:
    assert decode.unquote(text, plus=plus) == (unquote_plus(text) if plus else unquote(text))


_url_pieces = st.sampled_from(
    [*"/?#&=:@.[]% \t\n\x00\x7f\x1faZ9é-_~+;,", "http://", "//", "https://a.b", ":80", "[::1]"]
)


@settings(max_examples=2000, deadline=None)
@given(
    scheme=st.sampled_from(["http://", "https://", "", "HTTPS://", "ftp://", " http://"]),
    rest=st.lists(_url_pieces, max_size=20).map("".join),
)
def test_url_parts_agree_with_urlsplit(scheme: str, rest: str) -> None:
    """The fast split of plain http(s) URLs gives urlsplit's path, query and fragment (None
    where urlsplit raises), so that extraction and redaction see the same locations."""
    url = scheme + rest
    try:
        parts = urlsplit(url)
        expected: tuple[str, str, str] | None = (parts.path, parts.query, parts.fragment)
    except ValueError:
        expected = None
    assert split_url(url) == expected


_multipart_pieces = st.sampled_from(
    [
        *'ab\r\n-=;:"',
        "--b",
        "--b--",
        "\r\n\r\n",
        "\n\n",
        "Content-Disposition: form-data; name=",
        "é",
    ]
)


@settings(max_examples=1000, deadline=None)
@given(body=st.lists(_multipart_pieces, max_size=40).map("".join))
def test_multipart_bodies_are_rebuilt_byte_for_byte(body: str) -> None:
    """Redaction rebuilds a multipart body from its parts: untouched, it must be the same."""
    data = body.encode()
    multipart = read_multipart(data, "multipart/form-data; boundary=b")
    assert multipart is not None
    assert multipart.encoded(multipart.parts) == data
