"""Proxy benchmark (`make bench`): shopguard against bare mitmdump, measured in the same run.

Both run as reverse proxies (keeping the Host header) in front of one keep-alive HTTP server on
loopback, so that marketplace host names reach shopguard's scope without DNS and without the
test routing script (which defeats mitmproxy's connection reuse). A client on loopback sends
the same requests through each in turn; the figures that matter are the ratios.
Prints figures; asserts nothing. Loopback only.
"""

from __future__ import annotations

import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

BIN = Path(sys.executable).parent
REQUESTS = 1500
WARM_UP = 100


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stalls

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = b'{"ret":["SUCCESS::ok"],"data":{}}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the proxy exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s")


@contextmanager
def _proxy(command: list[str], port: int, home: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ, XDG_CONFIG_HOME=str(home / "config"), HOME=str(home))
    env["XDG_STATE_HOME"] = str(home / "state")
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(name, None)
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_listening(port, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _requests() -> list[tuple[str, str, str, dict[str, str], bytes]]:
    """A browsing mix: shop pages, mtop API calls with a JSON `data`, and aplus beacons."""
    sys.path.insert(0, str(Path(__file__).parent))
    from run import typical_request  # the engine benchmark's 2 KB order call

    mix = []
    for n in range(REQUESTS + WARM_UP):
        if n % 3 == 0:
            request = typical_request(n)
            parts = urlsplit(request.url)
            headers = {k: v for k, v in request.headers}
            mix.append(
                ("POST", parts.netloc, f"{parts.path}?{parts.query}", headers, request.body or b"")
            )
        elif n % 3 == 1:
            headers = {"accept": "text/html", "cookie": "cna=Zm9vYmFyYmF6cXV4; t=0a1b2c3d4e5f"}
            mix.append(
                (
                    "GET",
                    "item.taobao.com",
                    f"/item.htm?id={651234567890 + n}&spm=a1z10.1.0",
                    headers,
                    b"",
                )
            )
        else:
            headers = {"referer": "https://www.taobao.com/", "sec-fetch-dest": "image"}
            mix.append(
                ("GET", "gm.mmstat.com", f"/v.gif?cna=Zm9vYmFy&logtype=1&t={n}", headers, b"")
            )
    return mix


def _drive(port: int, mix: list[tuple[str, str, str, dict[str, str], bytes]]) -> list[float]:
    """Milliseconds per request over one keep-alive connection (after a warm-up)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.connect()
    assert connection.sock is not None
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    try:
        for index, (method, host, path, headers, body) in enumerate(mix):
            started = time.perf_counter()
            connection.request(method, path, body=body or None, headers={**headers, "host": host})
            response = connection.getresponse()
            response.read()
            if index >= WARM_UP:
                times.append((time.perf_counter() - started) * 1000)
    finally:
        connection.close()
    return times


def main() -> None:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    target = f"http://127.0.0.1:{upstream.server_address[1]}"
    mix = _requests()
    reverse = ["--set", f"mode=reverse:{target}", "--set", "keep_host_header=true"]
    results: dict[str, list[float]] = {}
    logged: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch)
        runs = {
            "bare mitmdump": [str(BIN / "mitmdump"), "-q", "--listen-host", "127.0.0.1"],
            "shopguard observe": [str(BIN / "shopguard"), "run", "--mode", "observe"],
            "shopguard enforce": [str(BIN / "shopguard"), "run", "--mode", "enforce"],
        }
        for name, command in runs.items():
            port = _free_port()
            command = [*command, "--listen-port", str(port), *reverse]
            if name.startswith("shopguard"):
                command += ["--log", str(home / f"{name.split()[1]}.jsonl")]
            with _proxy(command, port, home):
                results[name] = _drive(port, mix)
            if name.startswith("shopguard"):  # it did inspect them: one line per request
                log = (home / f"{name.split()[1]}.jsonl").read_text(encoding="utf-8")
                logged[name] = log.count('"event": "flow"')
    upstream.shutdown()
    bare = statistics.median(results["bare mitmdump"])
    print(f"proxy ({REQUESTS} requests on one keep-alive connection, loopback, reverse mode):")
    for name, times in results.items():
        median = statistics.median(times)
        total = sum(times) / 1000
        print(
            f"  {name:<18} median {median:.2f} ms, {len(times) / total:.0f} requests/s, "
            f"{median / bare:.2f}x bare mitmdump"
            + (f"; {logged[name]} flow lines logged" if name in logged else "")
        )


if __name__ == "__main__":
    main()
