"""Load generator for `bench/proxy_full.py`: a separate process that drives one proxy.

`python bench/loadgen.py SPEC.json` reads what to do from SPEC (written by proxy_full.py) and
prints one JSON object of results. Kinds:
- "http": `connections` threads, each one keep-alive connection to the proxy sending
  absolute-form requests for every host in turn, for `seconds`;
- "https": each thread opens a CONNECT tunnel to one host, sends `per_connection` requests
  inside the intercepted TLS, closes and goes on with the next host, for `seconds`;
- "latency": one keep-alive connection, requests sent at a fixed `rate` per second;
- "https_latency": one keep-alive TLS connection per host of the mix (opened before the clock
  starts), the mix's requests sent in order at a fixed `rate` per second, each on its host's;
- "handshake": for each name, CONNECT + TLS handshake once (the proxy has never seen the
  name: it makes a certificate), then again (it has one);
- "connects": `count` new TLS connections one after the other, each timed from the TCP
  connect to the end of the handshake, with one request on it.
With `wrk: PATH` (wrk on PATH), "http" is run by wrk instead of threads of this process: a Lua
script made from the mix sends it as absolute-form proxy requests over `connections`
keep-alive connections (two wrk threads); its summary becomes the same JSON.
With `direct: [name, port]` the TLS kinds connect straight to that loopback port, with the
name as the server name, instead of through CONNECT: the same client without a proxy. The TLS
kinds report who issued the certificates the client was shown (`issuers`), so that the caller
can tell an intercepted connection (the proxy's CA) from a tunnel (the upstream's).
Loopback only; every loop is bounded by its time window, its count or its list.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

Request = tuple[str, str, str, dict[str, str], str]  # method, host, path, headers, body


def _nodelay(connection: http.client.HTTPConnection) -> None:
    assert connection.sock is not None
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _send(
    connection: http.client.HTTPConnection, request: Request, absolute: bool
) -> tuple[int, int]:
    method, host, path, headers, body = request
    target = f"http://{host}{path}" if absolute else path
    connection.request(
        method, target, body=body.encode() if body else None, headers={**headers, "host": host}
    )
    response = connection.getresponse()
    data = response.read()
    return response.status, len(data)


class Totals:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = 0
        self.bytes = 0
        self.errors = 0
        self.statuses: dict[str, int] = {}
        self.connects_ms: list[float] = []
        self.issuers: Counter[str] = Counter()

    def issued(self, issuer: str) -> None:
        with self.lock:
            self.issuers[issuer] += 1

    def add(self, status: int, size: int) -> None:
        with self.lock:
            self.done += 1
            self.bytes += size
            key = str(status)
            self.statuses[key] = self.statuses.get(key, 0) + 1


def _http_worker(spec: dict[str, Any], index: int, deadline: float, totals: Totals) -> None:
    mix: list[Request] = [tuple(x) for x in spec["mix"]]  # type: ignore[misc]
    position = index * 7919 % len(mix)
    connection: http.client.HTTPConnection | None = None
    while time.perf_counter() < deadline:
        try:
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", spec["port"], timeout=30)
                connection.connect()
                _nodelay(connection)
            status, size = _send(connection, mix[position % len(mix)], absolute=True)
            position += 1
            if time.perf_counter() <= deadline:
                totals.add(status, size)
        except (OSError, http.client.HTTPException):
            with totals.lock:
                totals.errors += 1
            if connection is not None:
                connection.close()
            connection = None
    if connection is not None:
        connection.close()


def _tls_context(spec: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies; trusts only these CAs
    for ca in [spec["ca"]] if isinstance(spec["ca"], str) else spec["ca"]:
        context.load_verify_locations(cafile=ca)
    context.set_alpn_protocols(["http/1.1"])
    return context


class _Direct(http.client.HTTPSConnection):
    """TLS straight to a loopback port, with `host` as the server name (no proxy, no DNS)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(host, 443, context=context, timeout=30)
        self._port = port
        self._ssl = context

    def connect(self) -> None:
        raw = socket.create_connection(("127.0.0.1", self._port), timeout=self.timeout)
        self.sock = self._ssl.wrap_socket(raw, server_hostname=self.host)


def _issuer(connection: http.client.HTTPConnection) -> str:
    """The common name of whoever issued the certificate this connection was shown."""
    sock = connection.sock
    if not isinstance(sock, ssl.SSLSocket):
        return ""
    certificate = sock.getpeercert() or {}
    for rdn in certificate.get("issuer", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return "?"


def _tunnel(spec: dict[str, Any], context: ssl.SSLContext, host: str) -> tuple[Any, float]:
    connection: http.client.HTTPSConnection
    if spec.get("direct"):
        connection = _Direct(host, spec["direct"][1], context)
    else:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", spec["port"], context=context, timeout=30
        )
        connection.set_tunnel(host, 443)
    started = time.perf_counter()
    connection.connect()
    elapsed = (time.perf_counter() - started) * 1000
    _nodelay(connection)
    return connection, elapsed


def _https_worker(spec: dict[str, Any], index: int, deadline: float, totals: Totals) -> None:
    context = _tls_context(spec)
    by_host: dict[str, list[Request]] = {}
    for item in spec["mix"]:
        by_host.setdefault(item[1], []).append(tuple(item))  # type: ignore[arg-type]
    hosts = sorted(by_host)
    turn = index
    while time.perf_counter() < deadline:
        host = hosts[turn % len(hosts)]
        requests = by_host[host]
        offset = turn // len(hosts) * spec["per_connection"]
        turn += 1
        connection = None
        try:
            connection, connect_ms = _tunnel(spec, context, host)
            with totals.lock:
                totals.connects_ms.append(connect_ms)
            totals.issued(_issuer(connection))
            for n in range(spec["per_connection"]):
                if time.perf_counter() >= deadline:
                    break
                status, size = _send(connection, requests[(offset + n) % len(requests)], False)
                if time.perf_counter() <= deadline:
                    totals.add(status, size)
        except (OSError, http.client.HTTPException):
            with totals.lock:
                totals.errors += 1
        finally:
            if connection is not None:
                connection.close()


def throughput(spec: dict[str, Any]) -> dict[str, Any]:
    worker = _http_worker if spec["kind"] == "http" else _https_worker
    totals = Totals()
    started = time.perf_counter()
    deadline = started + spec["seconds"]
    threads = [
        threading.Thread(target=worker, args=(spec, n, deadline, totals), daemon=True)
        for n in range(spec["connections"])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=spec["seconds"] + 60)
    return {
        "requests": totals.done,
        "seconds": spec["seconds"],
        "requests_per_s": totals.done / spec["seconds"],
        "mb_per_s": totals.bytes / spec["seconds"] / 1e6,
        "errors": totals.errors,
        "statuses": totals.statuses,
        "connects_ms": totals.connects_ms,
        "issuers": totals.issuers,
    }


def _lua(data: str) -> str:
    """A Lua string literal of `data` (its UTF-8 bytes; anything but plain characters escaped)."""
    plain = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 /._-?=&%:;,()"
    return '"' + "".join(chr(b) if b in plain else f"\\{b:03d}" for b in data.encode()) + '"'


WRK_SCRIPT = """
local offset = 0
function setup(thread)
  thread:set("offset", offset)
  offset = offset + 7919
end
function init(args)
  n = offset
end
function request()
  n = n + 1
  local r = mix[n % #mix + 1]
  return wrk.format(r[1], r[2], r[3], r[4])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, "write": %d,'
    .. ' "status": %d, "timeout": %d}\\n', summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def wrk_throughput(spec: dict[str, Any]) -> dict[str, Any]:
    """The "http" window, sent by wrk (two threads, `connections` keep-alive connections)."""
    rows = []
    for method, host, path, headers, body in spec["mix"]:
        fields = ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in {**headers, "Host": host}.items())
        target = _lua(f"http://{host}{path}")
        rows.append(f"{{{_lua(method)}, {target}, {{{fields}}}, {_lua(body) if body else 'nil'}}}")
    script = "mix = {\n" + ",\n".join(rows) + "\n}\n" + WRK_SCRIPT
    with tempfile.NamedTemporaryFile("w", suffix=".lua", encoding="utf-8") as file:
        file.write(script)
        file.flush()
        threads = min(2, spec["connections"])
        command = [spec["wrk"], "-t", str(threads), "-c", str(spec["connections"])]
        seconds = max(1, round(spec["seconds"]))  # wrk takes whole seconds
        command += ["-d", f"{seconds}s", "--timeout", "30s", "-s", file.name]
        command.append(f"http://127.0.0.1:{spec['port']}/")
        done = subprocess.run(command, capture_output=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        sys.exit(f"wrk failed: {(done.stdout + done.stderr).decode()[-2000:]}")
    summary = json.loads(done.stdout.decode().strip().splitlines()[-1])
    seconds = summary["duration_us"] / 1e6
    errors = sum(summary[k] for k in ("connect", "read", "write", "timeout"))
    return {
        "requests": summary["requests"],
        "seconds": seconds,
        "requests_per_s": summary["requests"] / seconds,
        "mb_per_s": summary["bytes"] / seconds / 1e6,
        "errors": errors,
        "statuses": {"< 400": summary["requests"] - summary["status"], ">= 400": summary["status"]},
        "connects_ms": [],
        "issuers": {},
        "client": "wrk",
    }


def latency(spec: dict[str, Any]) -> dict[str, Any]:
    mix: list[Request] = [tuple(x) for x in spec["mix"]]  # type: ignore[misc]
    count = int(spec["seconds"] * spec["rate"])
    connection = http.client.HTTPConnection("127.0.0.1", spec["port"], timeout=30)
    connection.connect()
    _nodelay(connection)
    times: list[float] = []
    errors = 0
    start = time.perf_counter() + 0.05
    try:
        for n in range(count):
            pause = start + n / spec["rate"] - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            began = time.perf_counter()
            try:
                _send(connection, mix[n % len(mix)], absolute=True)
            except (OSError, http.client.HTTPException):
                errors += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", spec["port"], timeout=30)
                continue
            times.append((time.perf_counter() - began) * 1000)
    finally:
        connection.close()
    return {"latencies_ms": times, "errors": errors}


def https_latency(spec: dict[str, Any]) -> dict[str, Any]:
    mix: list[Request] = [tuple(x) for x in spec["mix"]]  # type: ignore[misc]
    context = _tls_context(spec)
    count = int(spec["seconds"] * spec["rate"])
    open_: dict[str, Any] = {}
    issuers: Counter[str] = Counter()
    times: list[float] = []
    errors = 0
    try:
        for request in mix:  # a connection per host, each used once before the clock starts
            if request[1] not in open_:
                open_[request[1]], _ = _tunnel(spec, context, request[1])
                issuers[_issuer(open_[request[1]])] += 1
                _send(open_[request[1]], request, absolute=False)
        start = time.perf_counter() + 0.05
        for n in range(count):
            pause = start + n / spec["rate"] - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            request = mix[n % len(mix)]
            began = time.perf_counter()
            try:
                _send(open_[request[1]], request, absolute=False)
            except (OSError, http.client.HTTPException):
                errors += 1
                open_[request[1]].close()
                open_[request[1]], _ = _tunnel(spec, context, request[1])
                continue
            times.append((time.perf_counter() - began) * 1000)
    finally:
        for connection in open_.values():
            connection.close()
    return {"latencies_ms": times, "errors": errors, "issuers": issuers}


def connects(spec: dict[str, Any]) -> dict[str, Any]:
    mix: list[Request] = [tuple(x) for x in spec["mix"]]  # type: ignore[misc]
    context = _tls_context(spec)
    connect_ms: list[float] = []
    request_ms: list[float] = []
    issuers: Counter[str] = Counter()
    errors = 0
    for n in range(spec["count"]):
        request = mix[n % len(mix)]
        connection = None
        try:
            connection, elapsed = _tunnel(spec, context, request[1])
            issuers[_issuer(connection)] += 1
            began = time.perf_counter()
            _send(connection, request, absolute=False)
            request_ms.append((time.perf_counter() - began) * 1000)
            connect_ms.append(elapsed)
        except (OSError, http.client.HTTPException):
            errors += 1
        finally:
            if connection is not None:
                connection.close()
        time.sleep(spec.get("pause", 0.01))
    return {
        "connect_ms": connect_ms,
        "request_ms": request_ms,
        "errors": errors,
        "issuers": issuers,
    }


def handshake(spec: dict[str, Any]) -> dict[str, Any]:
    context = _tls_context(spec)
    first: list[float] = []
    repeat: list[float] = []
    errors = 0
    for name in spec["names"]:
        for into in (first, repeat):
            try:
                connection, elapsed = _tunnel(spec, context, name)
                connection.close()
                into.append(elapsed)
            except (OSError, http.client.HTTPException):
                errors += 1
    return {"first_ms": first, "repeat_ms": repeat, "errors": errors}


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as file:
        spec = json.load(file)
    if spec["kind"] == "http" and spec.get("wrk"):
        result = wrk_throughput(spec)
    elif spec["kind"] in ("http", "https"):
        result = throughput(spec)
    elif spec["kind"] == "latency":
        result = latency(spec)
    elif spec["kind"] == "https_latency":
        result = https_latency(spec)
    elif spec["kind"] == "connects":
        result = connects(spec)
    else:
        result = handshake(spec)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
