"""Faults through a real `shopguard run`: whatever fails, a request that reached a site has its
line in the log, and the line says what went wrong."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import UpstreamPKI
from tests.support.market import API, BEACON, FakeMarket
from tests.support.proxy import Proxy, start_proxy

pytestmark = pytest.mark.integration

PHONE = "13800138000"
EMAIL = "wang.xiaoming@example.com"


@pytest.fixture(scope="module", params=["observe", "enforce"])
def proxy(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    market: FakeMarket,
    pki: UpstreamPKI,
) -> Iterator[Proxy]:
    home = tmp_path_factory.mktemp(f"faults-{request.param}")
    with socket.socket() as probe:  # a loopback port that nothing listens on: a site down
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    running = start_proxy(
        home,
        "--mode",
        request.param,
        "--set",
        "tcp_timeout=2",  # (a site that keeps the proxy waiting longer is given up on)
        routes={**market.routes, "closed": closed},
        upstream_ca=pki.ca_pem,
    )
    yield running
    running.stop()


def _connect(proxy: Proxy, scheme: str, host: str) -> socket.socket:
    """A client connection through the proxy to `host`: CONNECT and TLS for HTTPS."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    if scheme == "http":
        return sock
    sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    context = ssl.create_default_context(cafile=str(proxy.ca))
    return context.wrap_socket(sock, server_hostname=host)


def _target(scheme: str, host: str, path: str) -> str:
    return f"http://{host}{path}" if scheme == "http" else path


def _read_all(sock: socket.socket) -> bytes:
    received = b""
    for _ in range(1000):  # bounded: the proxy answers or closes within the socket timeout
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionError, ssl.SSLError):
            break
        if not chunk:
            break
        received += chunk
    return received


def _line(proxy: Proxy, host: str, path: str) -> dict[str, object]:
    found = proxy.wait_for(
        lambda x: x["event"] == "flow" and x["host"] == host and str(x["path"]).startswith(path)
    )
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("fault", ["truncated", "chunks"])
def test_a_response_that_fails_after_its_headers_still_gets_a_line(
    proxy: Proxy, market: FakeMarket, scheme: str, fault: str
) -> None:
    path = f"/fault/{fault}-{scheme}?mobile={PHONE}"
    with _connect(proxy, scheme, API) as sock:
        sock.sendall(f"GET {_target(scheme, API, path)} HTTP/1.1\r\nHost: {API}\r\n\r\n".encode())
        _read_all(sock)
    assert market.recorder.find(API, f"/fault/{fault}-{scheme}")  # the data reached the site
    line = _line(proxy, API, f"/fault/{fault}-{scheme}")
    assert line["error"]  # what went wrong,
    assert line["status"] == 200  # after the site had answered
    assert [f["category"] for f in line["findings"]] == ["phone"]  # type: ignore[union-attr]
    assert PHONE not in proxy.log.read_text(encoding="utf-8")


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_request_whose_body_fails_gets_a_line(
    proxy: Proxy, market: FakeMarket, scheme: str
) -> None:
    """A chunked upload with a broken chunk: in enforce mode the tracker is answered at its
    headers, in observe mode the upload fails on its way; either way there is a line."""
    path = f"/fault/upload-{scheme}?mobile={PHONE}"
    with _connect(proxy, scheme, BEACON) as sock:
        sock.sendall(
            f"POST {_target(scheme, BEACON, path)} HTTP/1.1\r\nHost: {BEACON}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
            f"mobile={PHONE}\r\n\r\n".encode()  # (a chunk header mitmproxy's error quotes)
        )
        _read_all(sock)
    line = _line(proxy, BEACON, f"/fault/upload-{scheme}")
    assert line["error"]
    assert PHONE not in proxy.log.read_text(encoding="utf-8")
    assert not market.recorder.find(BEACON, f"/fault/upload-{scheme}")
    if line["mode"] == "enforce":
        blocks = [a for a in line["actions"] if a["action"] == "block"]  # type: ignore[union-attr]
        assert blocks and blocks[0]["applied"] is True


DOWN = "unreachable.taobao.com"  # in scope; the routing script sends it to a closed port


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_an_unreachable_site_gets_a_line(proxy: Proxy, scheme: str) -> None:
    """Nothing reached the site, but the user sees that the browser tried: for HTTPS the
    tunnel itself fails (mitmproxy connects upstream before it answers the CONNECT)."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    with sock:
        if scheme == "https":
            sock.sendall(f"CONNECT {DOWN}:443 HTTP/1.1\r\nHost: {DOWN}:443\r\n\r\n".encode())
        else:
            sock.sendall(
                f"GET http://{DOWN}/?mobile={PHONE} HTTP/1.1\r\nHost: {DOWN}\r\n\r\n".encode()
            )
        reply = sock.recv(4096)  # (the proxy keeps the connection open after its answer)
    assert reply.startswith(b"HTTP/1.1 502")
    method = "CONNECT" if scheme == "https" else "GET"
    found = proxy.wait_for(
        lambda x: x["event"] == "flow" and x["host"] == DOWN and x["method"] == method
    )
    assert len(found) == 1, found
    (line,) = found
    assert line["site"] == "taobao"
    assert "status" not in line  # (the 502 is the proxy's: the site never answered)
    assert "connect" in str(line["error"]).lower()
    assert "127.0.0.1" not in str(line["error"])  # (addresses are masked)
    assert PHONE not in proxy.log.read_text(encoding="utf-8")


def test_a_tunnel_that_worked_gets_no_line_of_its_own(proxy: Proxy) -> None:
    """Only a failed tunnel is logged: a working one is seen through its requests' lines."""
    with _connect(proxy, "https", API) as sock:
        sock.sendall(
            f"GET /tunnel-ok HTTP/1.1\r\nHost: {API}\r\nConnection: close\r\n\r\n".encode()
        )
        _read_all(sock)
    _line(proxy, API, "/tunnel-ok")
    tunnels = [x for x in proxy.lines("flow") if x["method"] == "CONNECT"]
    assert all(x["host"] == DOWN for x in tunnels), tunnels


def test_mitmproxys_own_messages_on_the_terminal_hold_no_request_bytes(
    tmp_path: Path, market: FakeMarket, pki: UpstreamPKI
) -> None:
    """mitmproxy reports a protocol error with the bytes it choked on; even at its most
    talkative, what shopguard's terminal shows of them is masked."""
    running = start_proxy(
        tmp_path,
        "--set",
        "termlog_verbosity=debug",
        routes=market.routes,
        upstream_ca=pki.ca_pem,
    )
    try:
        body = f"mobile={PHONE}&email={EMAIL}"
        for scheme in ("http", "https"):
            with _connect(running, scheme, API) as sock:
                sock.sendall(
                    f"POST {_target(scheme, API, '/up')} HTTP/1.1\r\nHost: {API}\r\n"
                    f"Transfer-Encoding: chunked\r\n\r\n{body}\r\n".encode()
                )
                _read_all(sock)
            with _connect(running, scheme, API) as sock:  # headers never finished
                sock.sendall(f"GET /x?mobile={PHONE} HTTP/1.1\r\nHost: {API}\r\n".encode())
        assert running.wait_for(lambda x: x["event"] == "flow" and x["path"] == "/up")
    finally:
        running.stop()
    shown = running.output.text + running.stderr_path.read_text(encoding="utf-8")
    assert "before completing request headers" in shown  # (mitmproxy did say what went wrong)
    assert PHONE not in shown and EMAIL not in shown


def test_a_host_header_that_names_another_host_does_not_take_a_request_out_of_scope(
    proxy: Proxy,
) -> None:
    """`curl -x … -H 'Host: example.org' 'http://gm.mmstat.com/b.gif?mobile=…'`: the request
    goes to gm.mmstat.com, so it is that host's site's, logged (and blocked in enforce)."""
    with _connect(proxy, "http", BEACON) as sock:
        sock.sendall(
            f"GET http://{BEACON}/b.gif?mobile={PHONE} HTTP/1.1\r\nHost: example.org\r\n"
            "Referer: https://www.taobao.com/\r\nConnection: close\r\n\r\n".encode()
        )
        reply = _read_all(sock)
    line = _line(proxy, BEACON, "/b.gif")
    assert line["site"] == "taobao"
    blocks = [a for a in line["actions"] if a["action"] == "block"]  # type: ignore[union-attr]
    assert blocks and blocks[0]["applied"] is (line["mode"] == "enforce")
    if line["mode"] == "enforce":
        assert reply.startswith(b"HTTP/1.1 204")
    (mismatch,) = proxy.lines("host_mismatch")
    assert (mismatch["host"], mismatch["claimed"]) == (BEACON, "example.org")


def test_a_site_too_slow_to_answer_gets_a_line(proxy: Proxy, market: FakeMarket) -> None:
    """The request reached the site, which never answered in time (`tcp_timeout`)."""
    path = f"/slow/6?mobile={PHONE}&p={proxy.port}"
    with _connect(proxy, "https", API) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {API}\r\n\r\n".encode())
        _read_all(sock)
    assert market.recorder.find(API, path)
    line = _line(proxy, API, "/slow/6")
    assert line["error"] and "status" not in line
    assert [f["category"] for f in line["findings"]] == ["phone"]  # type: ignore[union-attr]


def test_a_full_log_stops_enforcement_and_recovers(proxy: Proxy) -> None:
    """The log's storage full (a file size limit on the running proxy): in enforce mode a
    request is answered locally with a 502, as no line could say what was done; in observe
    mode it passes. With room again the log says so, and every line in it parses. (Last in
    this module: it leaves its proxy's log with a gap.)"""
    import resource

    def send(n: int) -> bytes:
        with _connect(proxy, "http", API) as sock:
            sock.sendall(
                f"GET http://{API}/full-{n}?mobile={PHONE} HTTP/1.1\r\nHost: {API}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            return _read_all(sock)

    pid = proxy.process.pid
    size = proxy.log.stat().st_size
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))
    try:
        reply = send(1)
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
    mode = proxy.lines("proxy_started")[0]["sites"][0]["mode"]
    assert reply.startswith(b"HTTP/1.1 502" if mode == "enforce" else b"HTTP/1.1 200"), reply
    send(2)
    assert proxy.wait_for(lambda x: x["event"] == "log_recovered")
    assert _line(proxy, API, "/full-2")
    assert proxy.log.read_text(encoding="utf-8").endswith("\n")  # (and lines() parsed each)
