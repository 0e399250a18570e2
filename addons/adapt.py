"""mitmproxy flows as the engine's plain requests."""

from __future__ import annotations

from mitmproxy import http

from shopguard.engine.extract import PlainRequest


def plain_request(flow: http.HTTPFlow, body_cap: int) -> PlainRequest:
    """The request of `flow` (and its response headers, if any), the body cut at `body_cap`.

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
        response_headers = [
            (k.decode("latin-1"), v.decode("utf-8", "replace"))
            for k, v in flow.response.headers.fields
        ]
    return PlainRequest(
        method=request.method,
        url=request.pretty_url,
        headers=[
            (k.decode("latin-1"), v.decode("utf-8", "replace")) for k, v in request.headers.fields
        ],
        body=raw,
        body_truncated=truncated,
        response_headers=response_headers,
    )
