"""Load generator for `bench/proxy_full.py`: a separate process that drives one proxy.

`python bench/loadgen.py SPEC.json` reads what to do from SPEC (written by proxy_full.py) and
prints one JSON object of results. Kinds:
- "http": `connections` threads, each one keep-alive connection to the proxy sending
  absolute-form requests for every host in turn, for `seconds`;
- "https": each thread opens a CONNECT tunnel to one host, sends `per_connection` requests
  inside the intercepted TLS, closes and goes on with the next host, for `seconds`;
- "latency": one keep-alive connection, requests sent at a fixed `rate` per second;
- "handshake": for each name, CONNECT + TLS handshake once (the proxy has never seen the
  name: it makes a certificate), then again (it has one).
Loopback only; every loop is bounded by its time window or its list.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import sys
import threading
import time
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
    context = ssl.create_default_context(cafile=spec["ca"])
    context.set_alpn_protocols(["http/1.1"])
    return context


def _tunnel(spec: dict[str, Any], context: ssl.SSLContext, host: str) -> tuple[Any, float]:
    connection = http.client.HTTPSConnection("127.0.0.1", spec["port"], context=context, timeout=30)
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
    if spec["kind"] in ("http", "https"):
        result = throughput(spec)
    elif spec["kind"] == "latency":
        result = latency(spec)
    else:
        result = handshake(spec)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
