"""Report benchmark (`make bench`): `shopguard report` over a large flow log.

The log's lines are the recorder's own. A live `shopguard run` (observe mode, then enforce,
with the test profile) is sent every in-scope request of the labelled real corpus
(`tests/fixtures/real/`, eight marketplaces and their ad pixels) and of the HAR fixture
(`tests/fixtures/har/`); each line of its log becomes a template. A log of the chosen size is
then written from the templates by substitution on their text, without serialising JSON: the
timestamp (spread over a year, a proxy session a day), the host (the template's, or one of a
few numbered shards of it, as CDNs and API gateways have them), the fingerprints (one of a fixed
pool of variants of each) and the duration change from line to line. The distinct values are
bounded however long the log is: every combination of template, host shard and value variant
appears within the first ~60,000 lines. The log is a gzip-compressed rotation (the oldest
tenth), an uncompressed rotation and the live file, found as `report` finds a configured log.

`shopguard report` then reads it as a separate process, with `--format json` and with the
table, both to /dev/null: lines per second, MB per second and the process's peak resident
memory (VmHWM). It does so at a tenth of the size and at the size, to show that memory
follows the distinct values, not the lines. Size: `SHOPGUARD_BENCH_REPORT_MB` (or `--mb`),
default 1000; the log is deleted afterwards. Prints figures; asserts nothing. Loopback only.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO, cast
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from common import BIN, _free_port, _proxy  # noqa: E402

from shopguard import paths  # noqa: E402
from shopguard.cli.scan import read_capture  # noqa: E402
from shopguard.engine.settings import load_config  # noqa: E402
from tests.support.logschema import validate_text  # noqa: E402
from tests.support.replay import wire_requests  # noqa: E402

PROFILE = ROOT / "tests" / "fixtures" / "corpus" / "profile.yaml"
REAL = ROOT / "tests" / "fixtures" / "real"
HAR = ROOT / "tests" / "fixtures" / "har" / "visit.har"
DEFAULT_MB = 1000
HOST_SHARDS = 4  # a template's host, or one of 3 numbered shards of it
VALUE_VARIANTS = 32  # variants of each fingerprint (other visitors, other profile values)
SPAN_DAYS = 365
START = 1_764_547_200  # 2025-12-01T00:00:00Z
CHUNK_LINES = 5_000
SESSION_EVENTS = ("proxy_stopped", "proxy_started", "policy_loaded", "profile_loaded")

Request = tuple[str, str, str, list[tuple[str, str]], bytes]  # method, host, target, headers, body


# -- templates from a live proxy ----------------------------------------------------------------


def _corpus_requests() -> tuple[list[Request], dict[tuple[str, str, str], list[tuple[str, str]]]]:
    """Every in-scope request of the real corpus and the HAR fixture, as sent, and the response
    headers the upstream answers each with."""
    index = load_config(paths.shipped_config_dir(), None).host_index()
    requests: list[Request] = []
    answers: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    wired = [r for path in sorted(REAL.glob("*.yaml")) for r in wire_requests(path, index)]
    for request in wired:
        headers = list(request.headers)
        requests.append(
            (request.method, request.host_header, request.target, headers, request.body)
        )
        answers[(request.host_header, request.method, request.target)] = list(
            request.response_headers
        )
    for entry in read_capture(HAR, 4 * 1024 * 1024):
        plain = entry.request
        assert plain is not None
        parts = urlsplit(plain.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [("Host", parts.netloc), *plain.headers]
        if plain.body:
            headers.append(("Content-Length", str(len(plain.body))))
        requests.append((plain.method, parts.netloc, target, headers, plain.body or b""))
        answers[(parts.netloc, plain.method, target)] = list(plain.response_headers)
    return requests, answers


def _upstream(answers: dict[tuple[str, str, str], list[tuple[str, str]]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            host = self.headers.get("host") or ""
            self.send_response(200)
            for name, value in answers.get((host, self.command, self.path), []):
                if name.lower() not in ("content-length", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()

        do_GET = do_POST = do_HEAD = do_OPTIONS = do_PUT = _serve

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _send_all(port: int, requests: list[Request]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for method, _host, target, headers, body in requests:
        try:
            connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value.encode("utf-8"))
            connection.endheaders(body or None)
            connection.getresponse().read()
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.close()


def recorded_lines(home: Path) -> list[str]:
    """The lines a live proxy writes for the corpus, in observe then in enforce mode."""
    requests, answers = _corpus_requests()
    upstream = _upstream(answers)
    target = f"http://127.0.0.1:{upstream.server_address[1]}"
    proxy_home = home / "proxy-home"
    proxy_home.mkdir()
    profile = proxy_home / "profile.yaml"
    profile.write_bytes(PROFILE.read_bytes())
    profile.chmod(0o600)
    lines: list[str] = []
    try:
        for mode in ("observe", "enforce"):
            port, log = _free_port(), home / f"templates-{mode}.jsonl"
            command = [str(BIN / "shopguard"), "run", "--mode", mode, "--listen-port", str(port)]
            command += ["--log", str(log), "--profile", str(profile)]
            command += ["--set", f"mode=reverse:{target}", "--set", "keep_host_header=true"]
            with _proxy(command, port, proxy_home):
                _send_all(port, requests)
            lines += log.read_text(encoding="utf-8").splitlines()
            log.unlink()
    finally:
        upstream.shutdown()
    return lines


# -- the log from the templates -----------------------------------------------------------------

_TIMESTAMP = re.compile(r'"timestamp": "[^"]*"')
_HOST = re.compile(r'"host": "([^"]*)"')
_FINGERPRINT = re.compile(r'"fingerprint": "([0-9a-f]+)"')
_DURATION = re.compile(r'"duration_ms": [0-9.]+')


@dataclass
class Template:
    """A recorded line cut at what changes: literal text between slots."""

    pieces: list[str]  # len(slots) + 1 literal pieces
    slots: list[tuple[str, str]]  # ("ts", ""), ("host", host), ("fp", fingerprint), ("ms", "")


def template(line: str) -> Template:
    spans: list[tuple[int, int, str, str]] = []
    match = _TIMESTAMP.search(line)
    if match:
        spans.append((match.start(), match.end(), "ts", ""))
    host = _HOST.search(line)  # the line's own host (the first): findings name no host
    if host:
        spans.append((host.start(1), host.end(1), "host", host.group(1)))
    spans += [(m.start(1), m.end(1), "fp", m.group(1)) for m in _FINGERPRINT.finditer(line)]
    match = _DURATION.search(line)
    if match:
        spans.append((match.start(), match.end(), "ms", ""))
    spans.sort()
    pieces, slots, at = [], [], 0
    for start, end, kind, value in spans:
        pieces.append(line[at:start])
        slots.append((kind, value))
        at = end
    pieces.append(line[at:])
    return Template(pieces, slots)


def _shard(host: str, n: int) -> str:
    """`h5api.m.taobao.com` -> `h5api2.m.taobao.com` (n > 0); masked labels stay."""
    first, dot, rest = host.partition(".")
    if n == 0 or not dot or not first or "*" in first or first.replace(".", "").isdigit():
        return host
    return f"{first}{n + 1}.{rest}"


class Writer:
    """Lines from templates, in order: sessions of a day, flows between them."""

    def __init__(self, lines: list[str], total_lines: int) -> None:
        events = {}
        flows = []
        for line in lines:
            event = re.search(r'"event": "([a-z_]+)"', line)
            name = event.group(1) if event else ""
            if name == "flow":
                flows.append(template(line))
            elif name in SESSION_EVENTS and name not in events:
                events[name] = template(line)
        self.flows = flows
        self.session = [events[name] for name in SESSION_EVENTS if name in events]
        self.step_us = max(1, SPAN_DAYS * 86_400_000_000 // max(total_lines, 1))
        self.lines_per_session = max(100, total_lines // SPAN_DAYS)
        self.hosts: dict[tuple[str, int], str] = {}
        self.values: dict[tuple[str, int], str] = {}
        self.n = 0
        self._second = -1
        self._prefix = ""

    def sample(self) -> str:
        """One line of each template with a host shard and a value variant, and the session
        lines: what the log holds, to check against the log's schema."""
        lines = [self._fill(item, 1, 1) for item in [*self.flows, *self.session]]
        self.hosts.clear()
        self.values.clear()
        return "\n".join(lines) + "\n"

    def _timestamp(self) -> str:
        micros = self.n * self.step_us
        second = START + micros // 1_000_000
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f'"timestamp": "{self._prefix}.{micros % 1_000_000:06d}Z"'

    def _fill(self, item: Template, shard: int, variant: int) -> str:
        out = [item.pieces[0]]
        for (kind, value), piece in zip(item.slots, item.pieces[1:], strict=True):
            if kind == "ts":
                out.append(self._timestamp())
            elif kind == "host":
                key = (value, shard)
                host = self.hosts.get(key)
                if host is None:
                    host = self.hosts[key] = _shard(value, shard)
                out.append(host)
            elif kind == "fp":
                key = (value, variant)
                fingerprint = self.values.get(key)
                if fingerprint is None:
                    fingerprint = (
                        value
                        if variant == 0
                        else hashlib.blake2b(
                            f"{value}:{variant}".encode(), digest_size=len(value) // 2
                        ).hexdigest()
                    )
                    self.values[key] = fingerprint
                out.append(fingerprint)
            else:
                out.append(f'"duration_ms": {(self.n * 37) % 900 / 10 + 3:.1f}')
            out.append(piece)
        return "".join(out)

    def chunk(self, count: int) -> str:
        """The next `count` flow lines (and the session lines between them) as text."""
        out: list[str] = []
        flows, session = self.flows, self.session
        per_session = self.lines_per_session
        templates = len(flows)
        for _ in range(count):
            i = self.n
            if i % per_session == 0 and session:
                out.extend(self._fill(item, 0, 0) for item in (session[1:] if i == 0 else session))
            j, k = divmod(i, templates)
            out.append(self._fill(flows[k], j % HOST_SHARDS, (j // HOST_SHARDS) % VALUE_VARIANTS))
            self.n += 1
        out.append("")
        return "\n".join(out)


def _output(path: Path) -> BinaryIO:
    """A rotation the proxy compressed (`.gz`: at the fastest level, for the benchmark's
    sake; reading is as fast at any level), or a plain file."""
    if path.suffix == ".gz":
        return cast(BinaryIO, gzip.open(path, "wb", compresslevel=1))
    return path.open("wb")


@dataclass
class Log:
    files: list[Path]
    lines: int
    bytes: int
    seconds: float
    hosts: int
    values: int


def write_log(directory: Path, lines: list[str], megabytes: float) -> Log:
    """About `megabytes` MB (of uncompressed lines) as a gzip rotation, a plain rotation and
    the live file, as the proxy leaves them."""
    started = time.perf_counter()
    target = int(megabytes * 1_000_000)
    average = sum(len(x.encode()) + 1 for x in lines) / max(len(lines), 1)
    writer = Writer(lines, int(target / average))
    validate_text(writer.sample(), "generated lines")  # the recorder's shape, still
    live = directory / "flows.jsonl"
    files = [
        directory / "flows.jsonl.20260101T000000000000Z.gz",
        directory / "flows.jsonl.20260601T000000000000Z",
        live,
    ]
    shares = (0.1, 0.45, 0.45)
    written = 0
    for path, share in zip(files, shares, strict=True):
        goal = written + int(target * share)
        with _output(path) as out:
            while written < goal:  # (in chunks of about CHUNK_LINES lines, the last smaller)
                count = min(CHUNK_LINES, max(1, int((goal - written) / average)))
                data = writer.chunk(count).encode("utf-8")
                out.write(data)
                written += len(data)
    for path in files:
        path.chmod(0o600)
    return Log(
        files,
        writer.n,
        written,
        time.perf_counter() - started,
        len(set(writer.hosts.values())),
        len(set(writer.values.values())),
    )


# -- report, measured ---------------------------------------------------------------------------


@dataclass
class Measured:
    seconds: float
    rss_mib: float
    cpu: float
    code: int


# `shopguard report` as its entry point runs it, then the process's own peak resident memory.
# (Not wait4's or RUSAGE_CHILDREN's ru_maxrss: Linux carries a process's high-water mark over
# an exec, so a child of this benchmark would report at least this benchmark's own size.)
_MEASURED = """
import sys
from shopguard.cli.main import main
try:
    code = main(sys.argv[2:])
finally:
    with open("/proc/self/status") as status, open(sys.argv[1], "w") as out:
        out.write(next(x for x in status if x.startswith("VmHWM:")).split()[1])
sys.exit(code)
"""


def run_report(home: Path, config: Path, fmt: str) -> Measured:
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / "config"))
    env["XDG_STATE_HOME"] = str(home / "state")
    peak = home / "peak-rss-kib"
    command = [sys.executable, "-c", _MEASURED, str(peak), "report", "--config", str(config)]
    command += ["--format", fmt, "-o", os.devnull]
    errors = home / "report.stderr"  # (not a terminal: no progress display to pay for)
    with errors.open("wb") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
        )
        _, status, usage = os.wait4(process.pid, 0)  # (the child's own CPU time)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        print(errors.read_text(errors="replace")[-2000:], file=sys.stderr)
    kib = int(peak.read_text() or 0) if peak.exists() else 0
    peak.unlink(missing_ok=True)
    return Measured(seconds, kib / 1024, usage.ru_utime + usage.ru_stime, process.returncode)


def _mb(count: float) -> str:
    return f"{count / 1e6:,.0f}" if count >= 10e6 else f"{count / 1e6:.1f}"


def measure(scratch: Path, lines: list[str], megabytes: float) -> tuple[Log, dict[str, Measured]]:
    """Write a log of about `megabytes` MB, report on it in each format, print, delete it."""
    directory = scratch / f"log-{megabytes:g}"
    directory.mkdir()
    config = scratch / f"config-{megabytes:g}"
    config.mkdir()
    (config / "shopguard.yaml").write_text(
        f"log:\n  path: {directory / 'flows.jsonl'}\n", encoding="utf-8"
    )
    results = {}
    try:
        log = write_log(directory, lines, megabytes)
        on_disk = sum(p.stat().st_size for p in log.files)
        print(
            f"  {_mb(log.bytes)} MB of lines ({_mb(on_disk)} MB on disk in 3 files, "
            f"the oldest gzip-compressed): {log.lines:,} flow lines, written in "
            f"{log.seconds:.1f} s; distinct: {log.hosts} hosts, {log.values:,} fingerprints",
            flush=True,
        )
        for fmt in ("json", "table"):
            result = results[fmt] = run_report(scratch, config, fmt)
            state = "" if result.code == 0 else f" (exit {result.code}!)"
            print(
                f"    report --format {fmt:<5} {result.seconds:6.1f} s, "
                f"{log.lines / result.seconds:7,.0f} lines/s, "
                f"{log.bytes / 1e6 / result.seconds:3.0f} MB/s, peak RSS {result.rss_mib:3.0f} MiB"
                f" (CPU {result.cpu:.1f} s){state}",
                flush=True,
            )
    finally:
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()
    return log, results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--mb",
        type=float,
        default=float(os.environ.get("SHOPGUARD_BENCH_REPORT_MB") or DEFAULT_MB),
        help="size of the large log in MB (default: $SHOPGUARD_BENCH_REPORT_MB or 1000); "
        "the small one is a tenth",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        scratch = Path(name)
        free = shutil.disk_usage(scratch).free
        if free < args.mb * 1.2e6:
            sys.exit(
                f"report benchmark: {args.mb:g} MB do not fit in {scratch} "
                f"({free / 1e6:,.0f} MB free)"
            )
        started = time.perf_counter()
        lines = recorded_lines(scratch)
        flows = sum('"event": "flow"' in x for x in lines)
        print(
            f"report ({flows} flow lines of a live proxy as templates, recorded in "
            f"{time.perf_counter() - started:.0f} s; {HOST_SHARDS} shards of each host, "
            f"{VALUE_VARIANTS} variants of each fingerprint, {SPAN_DAYS} days):",
            flush=True,
        )
        tiny = run_report(scratch, _tiny_config(scratch, lines), "json")
        print(f"  a 10-line log: peak RSS {tiny.rss_mib:.0f} MiB, {tiny.seconds:.1f} s", flush=True)
        small = measure(scratch, lines, args.mb / 10)
        large = measure(scratch, lines, args.mb)
    for fmt in ("json", "table"):
        print(
            f"  peak RSS, --format {fmt}: "
            + " and ".join(
                f"{results[fmt].rss_mib:.0f} MiB at {_mb(log.bytes)} MB "
                f"({log.lines:,} lines, {log.values:,} distinct fingerprints)"
                for log, results in (small, large)
            )
        )


def _tiny_config(scratch: Path, lines: list[str]) -> Path:
    directory = scratch / "tiny"
    directory.mkdir()
    (directory / "flows.jsonl").write_text("\n".join(lines[:10]) + "\n", encoding="utf-8")
    config = scratch / "config-tiny"
    config.mkdir()
    (config / "shopguard.yaml").write_text(
        f"log:\n  path: {directory / 'flows.jsonl'}\n", encoding="utf-8"
    )
    return config


if __name__ == "__main__":
    main()
