"""mitmproxy flows as the engine's plain requests."""

from __future__ import annotations

import re

from mitmproxy import http

from shopguard.engine.request import PlainRequest


def plain_request(flow: http.HTTPFlow, body_cap: int, host: str | None = None) -> PlainRequest:
    """The request of `flow` (and its response headers, if any), the body cut at `body_cap`;
    `host` where the caller knows it already (mitmproxy parses the Host header each time).

    The body stays as sent (possibly compressed): the engine decodes it within its limits.
    A streamed body (`stream_large_bodies`) was never kept, and is given as None.
    """
    request = flow.request
    raw = None if request.stream else request.raw_content
    truncated = raw is not None and len(raw) > body_cap
    if raw is not None and truncated:
        raw = raw[:body_cap]
    response_headers: list[tuple[str, str]] = []
    if flow.response is not None:
        response_headers = header_pairs(flow.response.headers)
    return PlainRequest(
        method=request.method,
        url=url_text(request.pretty_url),
        headers=header_pairs(request.headers),
        body=raw,
        body_truncated=truncated,
        response_headers=response_headers,
        host=host if host is not None else request.pretty_host,
    )


def url_text(value: str) -> str:
    """mitmproxy keeps URL bytes that are not UTF-8 as lone surrogates; the engine gets them
    percent-encoded (`%FF`), which means the same to the site and keeps the URL text."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _RAW_BYTE.sub(lambda m: f"%{ord(m.group(0)) - 0xDC00:02X}", value)
    return value


_RAW_BYTE = re.compile("[\udc80-\udcff]")


def header_pairs(headers: http.Headers) -> list[tuple[str, str]]:
    """Header names and values as text, as the engine sees them."""
    return [(k.decode("latin-1"), v.decode("utf-8", "replace")) for k, v in headers.fields]
