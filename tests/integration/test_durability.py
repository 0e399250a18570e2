"""`kill -9` of a loaded `shopguard run`: every request whose client got a response has its line,
and every line the log holds parses and follows the schema (a killed proxy loses at most the
requests in flight, never a line it had written)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import UpstreamPKI
from tests.support.fuzz import Case, H1Client
from tests.support.logschema import problem
from tests.support.market import API, BEACON, SHOP, FakeMarket
from tests.support.proxy import Proxy, start_proxy

pytestmark = pytest.mark.integration

WORKERS = 6
KILL_AFTER = 150  # completed requests before the kill (or KILL_DEADLINE seconds)
KILL_DEADLINE = 20.0
PHONE = "13800138000"


@pytest.fixture(params=["observe", "enforce"])
def proxy(
    request: pytest.FixtureRequest, tmp_path: Path, market: FakeMarket, pki: UpstreamPKI
) -> Iterator[Proxy]:
    running = start_proxy(
        tmp_path, "--mode", request.param, routes=market.routes, upstream_ca=pki.ca_pem
    )
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait(timeout=10)


def _case(number: int) -> Case:
    """A request of the load: pages, API posts and beacons (blocked in enforce mode), over
    plain HTTP and inside CONNECT/TLS."""
    host = (SHOP, API, BEACON)[number % 3]
    transport = "h1s" if number % 4 == 0 else "h1"
    if host == API:
        body = f"mobile={PHONE}&n={number}".encode()
        headers = [(b"content-type", b"application/x-www-form-urlencoded")]
        path = b"/h5/x/1.0/"
        return Case(f"d{number:05d}", "load", transport, host, b"POST", path, headers, body)
    path = f"/v.gif?n={number}".encode()
    return Case(f"d{number:05d}", "load", transport, host, b"GET", path)


def test_kill_9_under_load_keeps_every_completed_request_and_every_line(proxy: Proxy) -> None:
    completed: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    counter = iter(range(100_000))

    def worker() -> None:
        clients = {
            "h1": H1Client(proxy.port, proxy.ca, tls=False, keep_alive=False),
            "h1s": H1Client(proxy.port, proxy.ca, tls=True, keep_alive=False),
        }
        while not stop.is_set():
            with lock:
                number = next(counter)
            case = _case(number)
            try:
                outcome = clients[case.transport].send(case)
            except (OSError, ConnectionError):
                continue  # the proxy is gone (refused): keep trying until told to stop
            if outcome.status is not None:
                with lock:
                    completed.add(case.id)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + KILL_DEADLINE
    while time.monotonic() < deadline:
        with lock:
            if len(completed) >= KILL_AFTER:
                break
        time.sleep(0.05)
    os.kill(proxy.process.pid, signal.SIGKILL)
    proxy.process.wait(timeout=10)
    time.sleep(0.5)  # clients see the connections go
    stop.set()
    for thread in threads:
        thread.join(timeout=40)
    with lock:
        done = set(completed)
    assert len(done) >= KILL_AFTER // 2, f"only {len(done)} requests completed before the kill"

    text = proxy.log.read_text(encoding="utf-8")
    bad, logged = [], set()
    for number, raw in enumerate(text.splitlines(), start=1):
        try:
            line = json.loads(raw)
        except ValueError as exc:
            bad.append(f"line {number} is not JSON ({exc}): {raw[:200]}")
            continue
        found = problem(line)
        if found:
            bad.append(f"line {number}: {found}")
        if line.get("event") == "flow":
            logged.add(str(line.get("path", "")).split("/")[1])
    assert not bad, "\n".join(bad[:10])
    missing = sorted(done - logged)
    assert not missing, f"{len(missing)} of {len(done)} completed have no line: {missing[:10]}"
    assert text.endswith("\n")  # (no torn last line)
    assert PHONE not in text
    print(f"\nkill -9 after {len(done)} completed requests; {len(text.splitlines())} valid lines")
