"""Replay the labelled corpus over the wire: a loopback upstream that answers each request with
the corpus's response headers, a raw client that sends exactly the corpus's request, and the
same requests as a HAR 1.2 file.

The client adds nothing of its own (no Accept-Encoding, no cookie jar, no compression): it sends
the corpus headers in their order, plus the Host header and, for a body, the Content-Length that
HTTP/1.1 needs. `WireRequest` holds the request as it was sent, so that the HAR file and
`policy explain` get the very same request as the proxy.
"""

from __future__ import annotations

import base64
import http.client
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from shopguard.engine.hosts import HostIndex, route
from tests.support.certs import UpstreamPKI
from tests.support.corpus import plain_request
from tests.support.market import LoopbackServers

STATUS = 200


@dataclass(frozen=True)
class WireRequest:
    """One corpus flow as it goes on the wire."""

    flow_id: str
    method: str
    url: str  # scheme://netloc + the request target actually sent (no fragment)
    headers: tuple[tuple[str, str], ...]  # exactly the header lines sent, in order
    body: bytes
    response_headers: tuple[tuple[str, str], ...]  # what the upstream answers with
    site: str  # the configured site the proxy routes it to

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def host_header(self) -> str:
        return next(v for k, v in self.headers if k.lower() == "host")

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def target(self) -> str:
        """The request target in origin form (`/path?query`)."""
        parts = urlsplit(self.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def wire_requests(path: Path, index: HostIndex) -> list[WireRequest]:
    """The in-scope flows of one corpus file, in order, as they will be sent.

    In scope: the request's host belongs to a configured site as the proxy routes it (the Host
    header, which the client sends as the URL's authority, with the Origin and the Referer).
    """
    flows = yaml.safe_load(path.read_text(encoding="utf-8"))["flows"]
    found = []
    for flow in flows:
        plain = plain_request(flow)  # the corpus scorer's reading of the flow
        parts = urlsplit(plain.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        url = f"{parts.scheme}://{parts.netloc}{target}"
        headers = list(plain.headers)
        names = {name.lower() for name, _ in headers}
        if "host" not in names:
            headers.insert(0, ("Host", parts.netloc))
        host = next(v for k, v in headers if k.lower() == "host")  # what the proxy routes by
        body = plain.body or b""
        if body and "content-length" not in names and "transfer-encoding" not in names:
            headers.append(("Content-Length", str(len(body))))
        routed = route(index, host, plain.header("origin"), plain.header("referer"))
        if routed is None:
            continue
        found.append(
            WireRequest(
                flow_id=str(flow["id"]),
                method=plain.method,
                url=url,
                headers=tuple(headers),
                body=body,
                response_headers=tuple(plain.response_headers),
                site=routed[0].name,
            )
        )
    return found


# -- the upstream ------------------------------------------------------------------------------


@dataclass
class Answers:
    """Response headers to give, per (scheme, host, method, target), first in first out."""

    queued: dict[tuple[str, str, str, str], deque[tuple[tuple[str, str], ...]]] = field(
        default_factory=dict
    )
    lock: threading.Lock = field(default_factory=threading.Lock)

    def queue(self, request: WireRequest) -> None:
        key = (request.scheme, request.host.lower(), request.method, request.target)
        with self.lock:
            self.queued.setdefault(key, deque()).append(request.response_headers)

    def take(self, key: tuple[str, str, str, str]) -> tuple[tuple[str, str], ...]:
        with self.lock:
            waiting = self.queued.get(key)
            return waiting.popleft() if waiting else ()


def _handler(answers: Answers, scheme: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            host = (self.headers.get("host") or "").rsplit(":", 1)[0].lower()
            headers = answers.take((scheme, host, self.command, self.path))
            self.send_response_only(STATUS)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class ReplayUpstream(LoopbackServers):
    """HTTP and HTTPS servers on 127.0.0.1 answering every host with the queued headers."""

    def __init__(self, pki: UpstreamPKI) -> None:
        self.answers = Answers()
        super().__init__(pki, lambda scheme: _handler(self.answers, scheme))


# -- the client --------------------------------------------------------------------------------


def send(proxy_port: int, request: WireRequest, cafile: Path, timeout: float = 10.0) -> int:
    """Send `request` through the proxy exactly as `request.headers` say; the response status.

    HTTPS goes through a CONNECT tunnel (as a browser does), plain HTTP in absolute form.
    """
    conn: http.client.HTTPConnection
    if request.scheme == "https":
        context = ssl.create_default_context(cafile=str(cafile))
        conn = http.client.HTTPSConnection(
            "127.0.0.1", proxy_port, context=context, timeout=timeout
        )
        conn.set_tunnel(request.host, request.port)
        target = request.target
    else:
        conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=timeout)
        target = request.url
    try:
        conn.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in request.headers:
            conn.putheader(name, value.encode("utf-8"))
        conn.endheaders(request.body or None)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


# -- HAR ---------------------------------------------------------------------------------------


def _har_post_data(request: WireRequest) -> dict[str, Any]:
    mime = next((v for k, v in request.headers if k.lower() == "content-type"), "")
    try:
        return {"mimeType": mime, "text": request.body.decode("utf-8")}
    except UnicodeDecodeError:  # binary (e.g. gzip): base64, as `shopguard scan` reads it
        return {
            "mimeType": mime,
            "text": base64.b64encode(request.body).decode("ascii"),
            "encoding": "base64",
        }


def _pairs(items: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in items]


def _cookies(headers: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    found = []
    for name, value in headers:
        if name.lower() == "cookie":
            for pair in value.split(";"):
                key, eq, item = pair.strip().partition("=")
                if eq and key:
                    found.append({"name": key, "value": item})
    return found


def har_document(requests: list[WireRequest]) -> dict[str, Any]:
    """A HAR 1.2 log of `requests` in order, with the upstream's answers as responses."""
    entries = []
    for request in requests:
        har_request: dict[str, Any] = {
            "method": request.method,
            "url": request.url,
            "httpVersion": "HTTP/1.1",
            "headers": _pairs(request.headers),
            "queryString": [
                {"name": k, "value": v}
                for k, v in parse_qsl(urlsplit(request.url).query, keep_blank_values=True)
            ],
            "cookies": _cookies(request.headers),
            "headersSize": -1,
            "bodySize": len(request.body),
        }
        if request.body:
            har_request["postData"] = _har_post_data(request)
        response_headers = (*request.response_headers, ("Content-Length", "0"))
        entries.append(
            {
                "startedDateTime": "2024-06-10T06:40:31.000Z",
                "time": 0,
                "request": har_request,
                "response": {
                    "status": STATUS,
                    "statusText": "OK",
                    "httpVersion": "HTTP/1.1",
                    "headers": _pairs(response_headers),
                    "cookies": [],
                    "content": {"size": 0, "mimeType": ""},
                    "redirectURL": "",
                    "headersSize": -1,
                    "bodySize": 0,
                },
                "cache": {},
                "timings": {"send": 0, "wait": 0, "receive": 0},
            }
        )
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "shopguard consistency test", "version": "1"},
            "entries": entries,
        }
    }
