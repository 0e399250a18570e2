"""Soak (`make bench-soak`): 50,000 flows through one `shopguard run`, its memory and descriptors.

A browsing mix (mtop order calls of the engine benchmark, shop pages, aplus beacons) over a
few keep-alive connections in turn, with shopguard as a reverse proxy keeping the Host header
in front of a loopback server, in enforce mode (every request inspected, trackers answered
locally). Prints the proxy's resident memory and open file descriptors after 1,000, 20,000
and 50,000 flows, the answers that were not 200 or 204, and the log's lines; writes them to
bench/results/soak.json (`bench/compare.py` compares two). Asserts nothing. Loopback only.
"""

from __future__ import annotations

import datetime
import gzip
import http.client
import json
import os
import socket
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import BIN, _free_port, _proxy, machine  # noqa: E402

RESULTS = HERE / "results" / "soak.json"
MIX = 1_600  # distinct requests, sent in turn
FLOWS = 50_000
CHECKPOINTS = (1_000, 20_000, 50_000)
PER_CONNECTION = 2_500  # (a browser opens new connections now and then, too)


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


def _requests() -> list[tuple[str, str, str, dict[str, str], bytes]]:
    """A browsing mix: shop pages, mtop API calls with a JSON `data`, and aplus beacons."""
    from run import typical_request  # the engine benchmark's 2 KB order call

    mix = []
    for n in range(MIX):
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
    load_before = os.getloadavg()
    began = time.monotonic()
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
    figures: dict[str, object] = {}
    for flows, rss, fds, elapsed in rows:
        figures[f"rss_mib_after_{flows}"] = rss
        figures[f"open_descriptors_after_{flows}"] = fds
        figures[f"seconds_to_{flows}"] = elapsed
    figures.update(
        answers={str(k): v for k, v in sorted(answers.items())},
        client_errors=failures,
        flow_lines=events.get("flow", 0),
        addon_errors=events.get("addon_error", 0),
        unparseable_lines=unparsed,
    )
    wall = time.monotonic() - began
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(load_before),
        "settings": {"flows": FLOWS, "mix_requests": MIX, "per_connection": PER_CONNECTION},
        "summary": {"shopguard enforce (soak)": figures},
        "wall_s": wall,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"  wall time {wall:.0f} s; written to {RESULTS.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
