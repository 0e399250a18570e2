"""Soak (`make bench`): 50,000 flows through one `shopguard run`, its memory and descriptors.

The browsing mix of the proxy benchmark, over a few keep-alive connections in turn, in
enforce mode (every request inspected, trackers answered locally). Prints the proxy's
resident memory and open file descriptors after 1,000, 20,000 and 50,000 flows, the answers
that were not 200 or 204, and the log's lines; asserts nothing. Loopback only.
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from proxy import BIN, _free_port, _proxy, _requests, _Upstream

FLOWS = 50_000
CHECKPOINTS = (1_000, 20_000, 50_000)
PER_CONNECTION = 2_500  # (a browser opens new connections now and then, too)


def rotated(log: Path) -> list[Path]:
    """The log's rotated files (compressed by then: the proxy waits for it when it stops)."""
    return sorted(log.parent.glob(log.name + ".*.gz"))


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def main() -> None:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    target = f"http://127.0.0.1:{upstream.server_address[1]}"
    mix = _requests()
    answers: dict[int, int] = {}
    failures = 0
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch)
        port, log = _free_port(), home / "soak.jsonl"
        command = [str(BIN / "shopguard"), "run", "--mode", "enforce", "--listen-port", str(port)]
        command += ["--log", str(log), "--set", f"mode=reverse:{target}"]
        command += ["--set", "keep_host_header=true"]
        started = time.monotonic()
        with _proxy(command, port, home) as process:
            connection: http.client.HTTPConnection | None = None
            for n in range(FLOWS):
                if connection is None or n % PER_CONNECTION == 0:
                    if connection is not None:
                        connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    connection.connect()
                    assert connection.sock is not None
                    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                method, host, path, headers, body = mix[n % len(mix)]
                try:
                    connection.request(
                        method, path, body=body or None, headers={**headers, "host": host}
                    )
                    response = connection.getresponse()
                    response.read()
                    answers[response.status] = answers.get(response.status, 0) + 1
                except (OSError, http.client.HTTPException):
                    failures += 1
                    connection.close()
                    connection = None
                if n + 1 in CHECKPOINTS:
                    elapsed = time.monotonic() - started
                    rows.append((n + 1, _rss_mib(process.pid), _fds(process.pid), elapsed))
            if connection is not None:
                connection.close()
        events: dict[str, int] = {}
        unparsed = 0
        text = "".join(gzip.decompress(p.read_bytes()).decode("utf-8") for p in rotated(log))
        for line in (text + log.read_text(encoding="utf-8")).splitlines():
            try:
                event = json.loads(line)["event"]
            except (ValueError, KeyError):
                unparsed += 1
                continue
            events[event] = events.get(event, 0) + 1
    upstream.shutdown()
    print(f"soak ({FLOWS} flows, enforce mode, {PER_CONNECTION} per keep-alive connection):")
    for flows, rss, fds, elapsed in rows:
        print(
            f"  after {flows:>6} flows: RSS {rss:.0f} MiB, {fds} open descriptors, {elapsed:.0f} s"
        )
    odd = {status: count for status, count in answers.items() if status not in (200, 204)}
    print(f"  answers: {dict(sorted(answers.items()))}; other than 200/204: {sum(odd.values())}")
    print(
        f"  client errors: {failures}; log: {events.get('flow', 0)} flow lines, "
        f"{events.get('addon_error', 0)} addon_error, {unparsed} unparseable"
    )


if __name__ == "__main__":
    main()
