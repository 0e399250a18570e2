"""Full proxy comparison (`make bench-proxy`): shopguard against bare mitmdump, as a user feels it.

Three proxies run side by side on loopback, each with the same benchmark-only resolving script
(bench/resolve_addon.py) and the same trusted test CA for the upstream: bare `mitmdump`,
`shopguard run --mode observe` and `shopguard run --mode enforce` (shipped sites and policies).
A separate load-generator process (bench/loadgen.py) drives one proxy at a time, in rounds
(A B C, then C B A, ...), each for a fixed time window; every figure is a ratio to (or a
difference from) bare mitmdump measured in the same round, and the median over rounds decides,
with the spread (min-max) beside it. Measured: throughput over keep-alive HTTP/1.1 and over
HTTPS through CONNECT with interception (a new connection every 20 requests), added latency at a
fixed unsaturated rate on one connection, and the first CONNECT + TLS handshake per host (the
proxy makes a certificate) against a repeated one. Results go to bench/results/latest.json
(`bench/compare.py OLD NEW` prints the differences). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import random
import selectors
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from proxy import _free_port, _wait_listening  # noqa: E402

from tests.support.certs import UpstreamPKI, make_pki, server_context  # noqa: E402

BIN = Path(sys.executable).parent
RESULTS = HERE / "results" / "latest.json"
PROXIES = ("bare mitmdump", "shopguard observe", "shopguard enforce")
PER_CONNECTION = 20  # HTTPS: requests per CONNECT tunnel

CDN = ("alicdn", "360buyimg", "lazcdn", "slatic", "pddpic", "ltwebstatic", "kwcdn", "media")
BEACON = ("mmstat", "facebook", "tiktok", "doubleclick", "googleadservices", "bing", "pinterest")


# --- what the upstream answers ------------------------------------------------------------------


def _filler(size: int, seed: int, alphabet: str) -> str:
    rng = random.Random(seed)
    words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(3, 9))) for _ in range(400)]
    out: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(words)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size]


def _bodies() -> dict[str, tuple[str, bytes, bool]]:
    """Response by kind: content type, body (already gzip-compressed where a shop uses it), gzip."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    html = "<!doctype html><html><body>" + _filler(80_000, 1, letters + '<>/="') + "</body>"
    script = "!function(){" + _filler(200_000, 2, letters + "(){};.=") + "}();"
    style = _filler(12_000, 3, letters + "{};:#-")
    record = {"itemId": "651234567890", "title": _filler(60, 4, letters), "price": "199.00"}
    api = json.dumps(
        {
            "api": "mtop.taobao.detail.getdetail",
            "ret": ["SUCCESS::ok"],
            "data": {"items": [record] * 40},
        }
    )
    image = bytes(random.Random(5).getrandbits(8) for _ in range(30_000))
    order = json.dumps({"ret": ["SUCCESS::ok"], "data": {"orderId": "4123456789012", "ok": True}})
    return {
        "page": ("text/html; charset=utf-8", gzip.compress(html.encode(), 6), True),
        "script": ("application/javascript", gzip.compress(script.encode(), 6), True),
        "style": ("text/css", gzip.compress(style.encode(), 6), True),
        "image": ("image/jpeg", image, False),
        "api": ("application/json", gzip.compress(api.encode(), 6), True),
        "order": ("application/json", order.encode() + b" " * 1200, False),
        "beacon": ("image/gif", b"GIF89a" + b"\0" * 194, False),
    }


def _kind(path: str) -> str:
    if path.startswith("/item.htm"):
        return "page"
    if path.startswith("/static/") and path.endswith(".js"):
        return "script"
    if path.startswith("/static/"):
        return "style"
    if path.startswith("/img/"):
        return "image"
    if path.startswith("/h5/mtop.trade"):
        return "order"
    if path.startswith("/h5/"):
        return "api"
    return "beacon"


def _handler(bodies: dict[str, tuple[str, bytes, bool]], counter: list[int]) -> Any:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def setup(self) -> None:
            counter[0] += 1  # connections accepted: shows whether the proxies reuse them
            super().setup()

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            kind, body, gzipped = bodies[_kind(self.path)]
            self.send_response(200)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            if gzipped:
                self.send_header("content-encoding", "gzip")
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: object) -> None:
            pass

        def handle(self) -> None:
            with suppress(OSError, ssl.SSLError):
                super().handle()

    return Handler


class Upstream:
    """A plain and a TLS port per host name on 127.0.0.1 (each real host has its own address),
    served by one accepting thread and a thread per connection."""

    def __init__(self, pki: UpstreamPKI, hosts: list[str]) -> None:
        self.counter = [0]
        handler = _handler(_bodies(), self.counter)
        self.context = server_context(pki)
        self.servers: list[ThreadingHTTPServer] = []
        self.routes: dict[str, Any] = {"hosts": {}}
        for name in [*hosts, ""]:
            pair = []
            for tls in (False, True):
                server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
                server.daemon_threads = True
                if tls:
                    server.socket = self.context.wrap_socket(
                        server.socket, server_side=True, do_handshake_on_connect=False
                    )
                self.servers.append(server)
                pair.append(server.server_address[1])
            if name:
                self.routes["hosts"][name] = pair
            else:
                self.routes["default"] = pair
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        with selectors.DefaultSelector() as selector:
            for server in self.servers:
                selector.register(server.socket, selectors.EVENT_READ, server)
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.2):
                    key.data._handle_request_noblock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for server in self.servers:
            server.server_close()

    def warm(self, pki: UpstreamPKI, names: list[str]) -> None:
        """Have the upstream issue its certificate for each name now, not during a measurement."""
        client = ssl.create_default_context(cafile=str(pki.ca_pem))
        port = self.routes["default"][1]
        for name in names:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            with client.wrap_socket(raw, server_hostname=name):
                pass


# --- the hosts and the request mix ----------------------------------------------------------------


def site_hosts(limit: int = 30) -> list[str]:
    """About 30 host names from the shipped site files, as many shop pages, API gateways, CDNs
    and beacon hosts as there are: each wildcard as the host a browser meets (www. for a shop
    page, h5api.m. for its API gateway, g. for a CDN, gm. for aplus analytics), exact names as
    they are; taken in turn from each role."""
    import yaml

    by_role: dict[str, list[str]] = {"page": [], "api": [], "asset": [], "beacon": []}
    for path in sorted((ROOT / "config" / "sites").glob("*.yaml")):
        for pattern in yaml.safe_load(path.read_text(encoding="utf-8")).get("hosts", []):
            pattern = str(pattern)
            if not pattern.startswith("*."):
                names = [pattern]
            elif any(x in pattern for x in CDN):
                names = ["g." + pattern[2:]]
            elif "mmstat" in pattern or pattern.startswith("*.net."):
                names = ["gm." + pattern[2:]]
            else:
                names = ["www." + pattern[2:], "h5api.m." + pattern[2:]]
            for name in names:
                if name not in by_role[_role(name)]:
                    by_role[_role(name)].append(name)
    chosen: list[str] = []
    quota = {"page": 7, "api": 8, "asset": 7, "beacon": 8}
    for role, names in by_role.items():
        chosen += names[: quota[role]]
    return chosen[:limit]


def _role(host: str) -> str:
    if any(x in host for x in BEACON) or host.startswith(
        ("collect.", "analytics.", "tr.", "ct.", "gm.")
    ):
        return "beacon"
    if any(x in host for x in CDN) or host.endswith("sc-static.net"):
        return "asset"
    if host.startswith("h5api.") or host == "ynuf.aliapp.org":
        return "api"
    return "page"


def request_mix(hosts: list[str], per_host: int = 40) -> list[list[Any]]:
    """Per host, `per_host` requests of its kind: shop pages with cookies, static assets, mtop
    calls with `data=` JSON in the query and a checkout POST among them, aplus/pixel beacons."""
    rng = random.Random(13)
    cookie = "cna=Zm9vYmFyYmF6cXV4; t=0a1b2c3d4e5f60718293; _m_h5_tk=8f0e2d1c3b4a5968_1764700000000"
    browser = {
        "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0",
        "accept-encoding": "gzip, deflate, br",
        "accept-language": "en-GB,en;q=0.9",
    }
    mix: list[list[Any]] = []
    for host in hosts:
        role = _role(host)
        for n in range(per_host):
            headers = dict(browser)
            body = ""
            method = "GET"
            if role == "page":
                headers.update(accept="text/html", cookie=cookie)
                path = f"/item.htm?id={651234567890 + n}&spm=a21bo.jianhao.{n}.0&scm=1007.{n}"
            elif role == "asset":
                headers.update(referer=f"https://www.taobao.com/?n={n}")
                path = rng.choice(
                    [f"/static/app.{n}.js", f"/static/main.{n}.css", f"/img/{n}.jpg_220x220.jpg"]
                )
            elif role == "api" and n % 10 == 9:
                method = "POST"
                headers.update(
                    cookie=cookie, **{"content-type": "application/x-www-form-urlencoded"}
                )
                order = {
                    "buyNow": "true",
                    "itemId": str(651234567890 + n),
                    "quantity": 1,
                    "address": {
                        "name": "Jane Example",
                        "phone": "+44 7700 900123",
                        "street": "1 Example Road",
                        "city": "London",
                    },
                    "deliveryId": "0",
                    "exParams": json.dumps({"tpId": n, "spm": "a1z0d"}),
                }
                body = "data=" + quote(json.dumps(order)) + "&" + "x" * rng.randint(500, 2000)
                path = f"/h5/mtop.trade.order.create.h5/4.0/?jsv=2.7.2&appKey=12574478&t={n}"
            elif role == "api":
                headers.update(cookie=cookie, accept="application/json")
                data = {
                    "id": str(651234567890 + n),
                    "detail_v": "3.3.2",
                    "exParams": json.dumps(
                        {
                            "spm": f"a21bo.{n}",
                            "umidToken": "T2gA" + "x" * 60,
                            "ua": "140#" + "y" * rng.randint(200, 1500),
                        }
                    ),
                }
                path = (
                    f"/h5/mtop.taobao.detail.getdetail/6.0/?jsv=2.7.2&appKey=12574478&t={n}"
                    f"&sign={rng.getrandbits(128):032x}&api=mtop.taobao.detail.getdetail"
                    f"&v=6.0&type=jsonp&dataType=jsonp&data={quote(json.dumps(data))}"
                )
            else:
                headers.update(referer="https://www.taobao.com/", **{"sec-fetch-dest": "image"})
                path = (
                    f"/v.gif?logtype=1&title=item&cna=Zm9vYmFyYmF6cXV4&spm-cnt=a21bo.{n}"
                    f"&uidaplus=2200{n:06d}&pvid={rng.getrandbits(64):016x}&t={n}"
                )
                if n % 4 == 3:
                    method = "POST"
                    path = f"/aplus.gif?t={n}"
                    body = json.dumps({"events": [{"id": k, "cna": "Zm9vYmFy"} for k in range(8)]})
                    headers["content-type"] = "text/plain"
            mix.append([method, host, path, headers, body])
    order = list(range(len(mix)))
    rng.shuffle(order)
    return [mix[k] for k in order]


# --- the proxies ---------------------------------------------------------------------------------


class Proxy:
    """One proxy process on loopback with its own home (config, state, CA) and port."""

    def __init__(self, name: str, home: Path, upstream: Upstream, pki: UpstreamPKI) -> None:
        self.name = name
        self.port = _free_port()
        self.home = home
        home.mkdir(parents=True)
        common = [
            "--set",
            f"ssl_verify_upstream_trusted_ca={pki.ca_pem}",
            "--set",
            f"scripts={HERE / 'resolve_addon.py'}",
        ]
        if name == "bare mitmdump":
            confdir = home / "mitmproxy"
            self.command = [
                str(BIN / "mitmdump"),
                "-q",
                "--listen-host",
                "127.0.0.1",
                "--listen-port",
                str(self.port),
                "--set",
                f"confdir={confdir}",
                *common,
            ]
            self.ca = confdir / "mitmproxy-ca-cert.pem"
        else:
            mode = name.split()[1]
            self.command = [
                str(BIN / "shopguard"),
                "run",
                "--mode",
                mode,
                "--listen-port",
                str(self.port),
                "--log",
                str(home / "flows.jsonl"),
                *common,
            ]
            self.ca = home / "state" / "shopguard" / "mitmproxy" / "mitmproxy-ca-cert.pem"
        self.env = dict(
            os.environ, HOME=str(home), SHOPGUARD_BENCH_UPSTREAM=json.dumps(upstream.routes)
        )
        self.env.update(XDG_CONFIG_HOME=str(home / "config"), XDG_STATE_HOME=str(home / "state"))
        for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
            self.env.pop(variable, None)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        stderr = (self.home / "stderr.txt").open("wb")
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        stderr.close()
        _wait_listening(self.port, self.process)
        deadline = time.monotonic() + 10
        while not self.ca.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def flow_lines(self) -> int | None:
        """shopguard's `flow` lines so far (it did inspect the requests); None for mitmdump."""
        log = self.home / "flows.jsonl"
        if not log.exists():
            return None
        with log.open(encoding="utf-8") as file:
            return sum(1 for line in file if '"event": "flow"' in line)

    def rss_mib(self) -> float | None:
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()  # type: ignore[union-attr]
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return None


@contextmanager
def proxies(scratch: Path, upstream: Upstream, pki: UpstreamPKI) -> Iterator[list[Proxy]]:
    started = [Proxy(name, scratch / f"proxy{n}", upstream, pki) for n, name in enumerate(PROXIES)]
    try:
        for proxy in started:
            proxy.start()
        yield started
    finally:
        for proxy in started:
            proxy.stop()


def drive(proxy: Proxy, scratch: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """One window of load from a separate load-generator process."""
    path = scratch / "spec.json"
    path.write_text(json.dumps({**spec, "port": proxy.port, "ca": str(proxy.ca)}), "utf-8")
    budget = spec.get("seconds", 0) * 2 + 120
    done = subprocess.run(
        [sys.executable, str(HERE / "loadgen.py"), str(path)],
        capture_output=True,
        timeout=budget,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed on {proxy.name}: {done.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- figures ------------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _spread(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "rounds": values,
    }


def _fmt(figure: dict[str, Any], unit: str = "x", digits: int = 2) -> str:
    f = f"{{:.{digits}f}}"
    return (
        f"{f.format(figure['median'])}{unit} ({f.format(figure['min'])}-{f.format(figure['max'])})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows, 3 rounds (~1 min)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    quick = args.quick
    rounds = args.rounds or (3 if quick else 5)
    window = 2.0 if quick else 8.0  # seconds per throughput window
    latency_seconds = 2.0 if quick else 6.0
    rate = 50.0
    connections = 4
    handshake_hosts = 6 if quick else 24

    hosts = site_hosts()
    mix = request_mix(hosts)
    shop_domains = [h.removeprefix("www.") for h in hosts if h.startswith("www.")]
    fresh = [
        [f"r{r}n{k}.{shop_domains[k % len(shop_domains)]}" for k in range(handshake_hosts)]
        for r in range(rounds)
    ]
    raw: dict[str, dict[str, list[Any]]] = {name: {} for name in PROXIES}
    upstream_connections: dict[str, list[int]] = {name: [] for name in PROXIES}
    began = time.monotonic()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="shopguard-bench-") as scratch_name:
        scratch = Path(scratch_name)
        pki = make_pki(scratch / "pki", ["upstream.invalid"])
        upstream = Upstream(pki, hosts)
        upstream.start()
        upstream.warm(pki, [*hosts, *(n for names in fresh for n in names)])
        try:
            with proxies(scratch, upstream, pki) as running:
                for proxy in running:  # warm-up: every host once over each transport
                    drive(
                        proxy,
                        scratch,
                        {"kind": "http", "mix": mix, "seconds": 1.0, "connections": 2},
                    )
                    drive(
                        proxy,
                        scratch,
                        {
                            "kind": "https",
                            "mix": mix,
                            "seconds": 1.5,
                            "connections": 2,
                            "per_connection": PER_CONNECTION,
                        },
                    )
                for r in range(rounds):
                    order = running if r % 2 == 0 else running[::-1]
                    for proxy in order:
                        record = raw[proxy.name]
                        before = upstream.counter[0]
                        record.setdefault("http", []).append(
                            drive(
                                proxy,
                                scratch,
                                {
                                    "kind": "http",
                                    "mix": mix,
                                    "seconds": window,
                                    "connections": connections,
                                },
                            )
                        )
                        upstream_connections[proxy.name].append(upstream.counter[0] - before)
                        record.setdefault("https", []).append(
                            drive(
                                proxy,
                                scratch,
                                {
                                    "kind": "https",
                                    "mix": mix,
                                    "seconds": window,
                                    "connections": connections,
                                    "per_connection": PER_CONNECTION,
                                },
                            )
                        )
                        record.setdefault("latency", []).append(
                            drive(
                                proxy,
                                scratch,
                                {
                                    "kind": "latency",
                                    "mix": mix,
                                    "seconds": latency_seconds,
                                    "rate": rate,
                                },
                            )
                        )
                        record.setdefault("handshake", []).append(
                            drive(proxy, scratch, {"kind": "handshake", "names": fresh[r]})
                        )
                    print(
                        f"  round {r + 1}/{rounds} done ({time.monotonic() - began:.0f} s)",
                        flush=True,
                    )
                memory = {proxy.name: proxy.rss_mib() for proxy in running}
                logged = {proxy.name: proxy.flow_lines() for proxy in running}
        finally:
            upstream.stop()
    report(
        raw,
        upstream_connections,
        memory,
        logged,
        args,
        rounds,
        window,
        latency_seconds,
        rate,
        connections,
        hosts,
        mix,
        time.monotonic() - began,
        load_before,
    )


def report(
    raw: dict[str, dict[str, list[Any]]],
    upstream_connections: dict[str, list[int]],
    memory: dict[str, float | None],
    logged: dict[str, int | None],
    args: argparse.Namespace,
    rounds: int,
    window: float,
    latency_seconds: float,
    rate: float,
    connections: int,
    hosts: list[str],
    mix: list[list[Any]],
    wall: float,
    load_before: tuple[float, float, float],
) -> None:
    import mitmproxy.version

    bare = raw["bare mitmdump"]
    summary: dict[str, Any] = {}
    for name in PROXIES:
        mine = raw[name]
        figures: dict[str, Any] = {}
        for transport in ("http", "https"):
            rates = [x["requests_per_s"] for x in mine[transport]]
            figures[f"{transport}_requests_per_s"] = _spread(rates)
            figures[f"{transport}_ratio"] = _spread(
                [x / b["requests_per_s"] for x, b in zip(rates, bare[transport], strict=True)]
            )
            figures[f"{transport}_errors"] = sum(x["errors"] for x in mine[transport])
            statuses: dict[str, int] = {}
            for x in mine[transport]:
                for key, count in x["statuses"].items():
                    statuses[key] = statuses.get(key, 0) + count
            figures[f"{transport}_statuses"] = statuses
        connects = [statistics.median(x["connects_ms"]) for x in mine["https"] if x["connects_ms"]]
        figures["https_connect_ms"] = _spread(connects)
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            mine_q = [_percentile(x["latencies_ms"], q) for x in mine["latency"]]
            bare_q = [_percentile(x["latencies_ms"], q) for x in bare["latency"]]
            figures[f"latency_{label}_ms"] = _spread(mine_q)
            figures[f"latency_{label}_added_ms"] = _spread(
                [m - b for m, b in zip(mine_q, bare_q, strict=True)]
            )
        first = [statistics.median(x["first_ms"]) for x in mine["handshake"]]
        repeat = [statistics.median(x["repeat_ms"]) for x in mine["handshake"]]
        figures["handshake_first_ms"] = _spread(first)
        figures["handshake_repeat_ms"] = _spread(repeat)
        figures["handshake_first_ratio"] = _spread(
            [
                m / statistics.median(b["first_ms"])
                for m, b in zip(first, bare["handshake"], strict=True)
            ]
        )
        figures["upstream_connections_per_http_window"] = upstream_connections[name]
        figures["rss_mib_at_end"] = memory.get(name)
        figures["flow_lines_logged"] = logged.get(name)
        summary[name] = figures

    cores = os.cpu_count()
    print(
        f"proxy, full comparison ({rounds} rounds, {len(hosts)} hosts, {connections} connections,"
        f" {window:.0f} s windows; median (min-max) over rounds, each against bare mitmdump in"
        f" the same round; {cores} cores):"
    )
    for name in PROXIES:
        f = summary[name]
        print(f"  {name}")
        for transport, label in (("http", "HTTP/1.1 keep-alive"), ("https", "HTTPS via CONNECT")):
            line = (
                f"    {label:<20} {f[f'{transport}_requests_per_s']['median']:7.0f} req/s"
                f"  {_fmt(f[f'{transport}_ratio'])}"
            )
            if f[f"{transport}_errors"]:
                line += f"  {f[f'{transport}_errors']} errors"
            print(line)
        if name != "bare mitmdump":
            print(
                f"    latency at {rate:.0f}/s added: p50 {_fmt(f['latency_p50_added_ms'], ' ms')},"
                f" p99 {_fmt(f['latency_p99_added_ms'], ' ms')}"
            )
        else:
            print(
                f"    latency at {rate:.0f}/s: p50 {_fmt(f['latency_p50_ms'], ' ms')},"
                f" p99 {_fmt(f['latency_p99_ms'], ' ms')}"
            )
        print(
            f"    CONNECT+TLS handshake: first per host {_fmt(f['handshake_first_ms'], ' ms', 1)},"
            f" repeated {_fmt(f['handshake_repeat_ms'], ' ms', 1)}"
            + ("" if name == "bare mitmdump" else f"; first {_fmt(f['handshake_first_ratio'])}")
        )
        if f["flow_lines_logged"] is not None:
            print(f"    {f['flow_lines_logged']} flow lines logged (all phases, warm-up included)")
        blocked = {k: v for k, v in f["https_statuses"].items() if k != "200"}
        if blocked:
            print(f"    answered by the proxy itself (HTTPS, all rounds): {blocked}")
    print(
        f"  wall time {wall:.0f} s; load average {load_before[0]:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after (other work on the machine widens the spreads)"
    )

    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": cores,
            "python": platform.python_version(),
            "mitmproxy": mitmproxy.version.VERSION,
            "platform": platform.platform(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "settings": {
            "quick": args.quick,
            "rounds": rounds,
            "window_s": window,
            "latency_window_s": latency_seconds,
            "latency_rate_per_s": rate,
            "connections": connections,
            "requests_per_https_connection": PER_CONNECTION,
            "hosts": hosts,
            "mix_requests": len(mix),
        },
        "summary": summary,
        "wall_s": wall,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(
        f"  written to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}"
    )


if __name__ == "__main__":
    main()
