"""Full proxy comparison (`make bench-proxy`): shopguard against bare mitmdump, as a user feels it.

Four proxies run side by side on loopback, each with the same benchmark-only resolving script
(bench/resolve_addon.py) and the same trusted test CA for the upstream: bare `mitmdump`,
`shopguard run --mode observe`, `--mode enforce` (shipped sites and policies) and enforce with a
5,000-rule Adblock-syntax list imported into its own configuration with `shopguard policy
import abp` (synthetic, generated here in the shapes of real lists). A separate load-generator
process (bench/loadgen.py) drives one proxy at a time, in rounds (A B C D, then D C B A, ...),
each for a fixed time window; every figure is a ratio to (or a difference from) bare mitmdump
measured in the same round, and the median over rounds decides, with the spread (min-max)
beside it. Measured: throughput over keep-alive HTTP/1.1 and over HTTPS through CONNECT with
interception (a new connection every 20 requests), added latency at a fixed unsaturated rate
over HTTP and over HTTPS (keep-alive tunnels), and the first CONNECT + TLS handshake per host
(the proxy makes a certificate) against a repeated one. Then, per round, HTTPS to a host no site
lists (out of scope): through shopguard, which leaves it an opaque tunnel, against bare mitmdump
intercepting it and against no proxy at all (the client connects straight to the upstream):
throughput, added latency per request and added time per new connection, and who issued the
certificate the client saw. Results go to bench/results/latest.json (`bench/compare.py OLD NEW`
prints the differences). `--quick`: 3 rounds of short windows, for `make bench`, into
bench/results/quick.json. Plain HTTP is sent by wrk where it is installed. Prints figures;
asserts nothing. Loopback only.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import random
import re
import selectors
import shutil
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
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from common import BIN, _free_port, _wait_listening, machine  # noqa: E402

from tests.support.certs import UpstreamPKI, make_pki, server_context  # noqa: E402

RESULTS = HERE / "results" / "latest.json"
QUICK_RESULTS = HERE / "results" / "quick.json"  # `make bench` leaves the full run's alone
RULES = 5_000
PROXIES = (
    "bare mitmdump",
    "shopguard observe",
    "shopguard enforce",
    f"shopguard enforce, {RULES:,} rules",
)
PER_CONNECTION = 20  # HTTPS: requests per CONNECT tunnel
OUT_OF_SCOPE = "www.example-shop.test"  # a shop no site file lists
ROUTES = (
    "bare mitmdump, intercepting",
    "shopguard observe, tunnel",
    "no proxy",
    "bare mitmdump, passing through",  # (`ignore_hosts`: what a tunnel costs mitmproxy itself)
)

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


# --- the imported block list --------------------------------------------------------------------


def block_list(mix: list[list[Any]], count: int = RULES) -> tuple[str, int]:
    """A synthetic Adblock-syntax list of `count` rules about the shipped sites' domains, in the
    shapes real filter lists use (`||host^` anchors, path patterns, `$third-party`, `$script`,
    `$image`, `$removeparam=`, a few `@@` exceptions), with comments and a tenth as many lines
    about hosts no site lists (an importer skips those). A handful match requests of the mix,
    as a real list matches a shop's trackers; the rest name hosts and paths the mix never
    visits. Returns the text and how many rules match the mix."""
    import yaml

    rng = random.Random(29)
    listed: dict[str, int] = {}
    first: set[str] = set()
    for path in sorted((ROOT / "config" / "sites").glob("*.yaml")):
        site = yaml.safe_load(path.read_text(encoding="utf-8"))
        first |= {str(g).removeprefix("*.") for g in site.get("first_party") or []}
        for glob in site.get("hosts", []):
            if str(glob).startswith("*."):  # a site's domain, with every host below it
                domain = str(glob)[2:]
                listed[domain] = listed.get(domain, 0) + 1
    # domains only one site lists, so that each rule is imported once; no $third-party on a
    # domain its site calls its own (first party), where it would never apply
    own = [d for d, sites in listed.items() if sites == 1 and d in first]
    other = [d for d, sites in listed.items() if sites == 1 and d not in first]
    words = ["ad", "track", "pixel", "stat", "log", "beacon", "collect", "metrics", "tag", "sdk"]
    matching = [  # one request of the mix each (its path without the query), as lists name them
        "||gm.net.daraz.com/aplus.gif",
        "||analytics.tiktok.com/v.gif$image,third-party",
    ]
    for host in ("g.ltwebstatic.com", "g.lazcdn.com", "g.pddpic.com", "g.360buyimg.com"):
        path = next(m[2] for m in mix if m[1] == host).split("?")[0]
        option = {".js": "$script", ".jpg": "$image"}.get(path[path.rfind(".") :], "")
        matching.append(f"||{host}{path}{option}")
    lines = ["[Adblock Plus 2.0]", "! Title: shopguard benchmark list (synthetic)", *matching]
    rules = len(matching)
    while rules < count:
        n = rules
        word = words[n % len(words)]
        domain = (own + other)[rng.randrange(len(own) + len(other))]
        shape = n % 20
        if shape < 8:
            rule = f"||{word}{n}.{domain}^"
        elif shape < 12:
            rule = f"||{domain}/{word}/{n}/{rng.choice(words)}.js"
        elif shape < 14:
            rule = f"||{domain}/{word}{n}/*/{rng.choice(words)}.gif$image"
        elif shape < 17:
            domain = other[n % len(other)]
            rule = f"||{domain}/{word}-{n}^$third-party"
        elif shape < 18:
            domain = other[n % len(other)]
            rule = f"||{word}{n}.{domain}^$script,third-party"
        elif shape < 19:
            rule = f"||{domain}^$removeparam={word}_{n}"
        else:
            rule = f"@@||{domain}/{word}{n}/*"
        lines.append(rule)
        rules += 1
        if n % 10 == 0:
            lines.append(f"||{word}{n}.adnet{n % 97}.invalid^$third-party")
        if n % 500 == 0:
            lines.append(f"! section {n // 500}")
    return "\n".join(lines) + "\n", len(matching)


def import_block_list(home: Path, env: dict[str, str], list_path: Path) -> dict[str, Any]:
    """`shopguard policy import abp LIST --site NAME -o …/sites/NAME.yaml` for every shipped
    site, into this proxy's own configuration directory, as a user would do it."""
    sites = home / "config" / "shopguard" / "sites"
    sites.mkdir(parents=True, exist_ok=True)
    imported = 0
    summaries = {}
    for path in sorted((ROOT / "config" / "sites").glob("*.yaml")):
        name = path.stem
        command = [str(BIN / "shopguard"), "policy", "import", "abp", str(list_path)]
        command += ["--site", name, "-o", str(sites / f"{name}.yaml")]
        done = subprocess.run(
            command,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        last = done.stderr.decode().strip().splitlines()[-1:] or [""]
        if done.returncode != 0:
            raise RuntimeError(f"policy import for {name} failed: {last[0]}")
        summaries[name] = last[0].split(": ", 1)[-1]
        imported += int(last[0].split(": ", 1)[-1].split()[0])
    return {"rules_imported": imported, "per_site": summaries}


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
            mode = "observe" if "observe" in name else "enforce"
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
        self.imported: dict[str, Any] | None = None
        if name.endswith(" rules"):
            list_path = home / "blocklist.txt"
            text, matching = block_list(request_mix(site_hosts()))
            list_path.write_text(text, encoding="utf-8")
            self.imported = import_block_list(home, self.env, list_path)
            self.imported["rules_matching_the_mix"] = matching

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
        count = 0
        for path in [log, *sorted(log.parent.glob(log.name + ".*"))]:  # rotated files too
            with suppress(OSError, EOFError, gzip.BadGzipFile):
                opener = gzip.open if path.suffix == ".gz" else open
                with opener(path, "rt", encoding="utf-8") as file:
                    count += sum(1 for line in file if '"event": "flow"' in line)
        return count

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
    """The proxies compared, and last a bare mitmdump told to pass the out-of-scope host
    through (`ignore_hosts`), as shopguard does every host no site lists."""
    started = [Proxy(name, scratch / f"proxy{n}", upstream, pki) for n, name in enumerate(PROXIES)]
    passing = Proxy(PROXIES[0], scratch / "passthrough", upstream, pki)
    passing.command += ["--set", f"ignore_hosts={re.escape(OUT_OF_SCOPE)}"]
    started.append(passing)
    try:
        for proxy in started:
            proxy.start()
        yield started
    finally:
        for proxy in started:
            proxy.stop()


def drive(proxy: Proxy, scratch: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """One window of load through `proxy` from a separate load-generator process."""
    return loadgen(proxy.name, scratch, {"port": proxy.port, "ca": str(proxy.ca), **spec})


def loadgen(label: str, scratch: Path, spec: dict[str, Any]) -> dict[str, Any]:
    path = scratch / "spec.json"
    path.write_text(json.dumps(spec), "utf-8")
    budget = spec.get("seconds", 0) * 2 + 120
    done = subprocess.run(
        [sys.executable, str(HERE / "loadgen.py"), str(path)],
        capture_output=True,
        timeout=budget,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed on {label}: {done.stderr.decode()[-2000:]}")
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


@dataclass
class Settings:
    quick: bool
    rounds: int
    window: float  # seconds per throughput window
    latency_seconds: float  # seconds per fixed-rate latency window
    rate: float = 50.0  # requests per second in the latency windows: far from saturation
    connections: int = 4
    handshake_hosts: int = 16
    new_connections: int = 60  # out of scope: new connections timed one after the other
    wrk: str | None = None  # wrk's path, where installed: it sends the plain-HTTP windows


def settings(quick: bool, rounds: int | None) -> Settings:
    if quick:
        return Settings(quick, rounds or 3, 1.5, 1.5, handshake_hosts=6, new_connections=30)
    return Settings(quick, rounds or 4, 5.0, 4.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows, 3 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="at least 3")
    parser.add_argument("--out", type=Path, help="default bench/results/latest.json (quick.json)")
    parser.add_argument("--no-wrk", action="store_true", help="the project's client even so")
    args = parser.parse_args()
    s = settings(args.quick, max(3, args.rounds) if args.rounds else None)
    s.wrk = None if args.no_wrk else shutil.which("wrk")
    out: Path = args.out or (QUICK_RESULTS if args.quick else RESULTS)

    hosts = site_hosts()
    mix = request_mix(hosts)
    outside = request_mix([OUT_OF_SCOPE])
    shop_domains = [h.removeprefix("www.") for h in hosts if h.startswith("www.")]
    fresh = [
        [f"r{r}n{k}.{shop_domains[k % len(shop_domains)]}" for k in range(s.handshake_hosts)]
        for r in range(s.rounds)
    ]
    raw: dict[str, dict[str, list[Any]]] = {name: {} for name in (*PROXIES, *ROUTES)}
    upstream_connections: dict[str, list[int]] = {name: [] for name in PROXIES}
    began = time.monotonic()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="shopguard-bench-") as scratch_name:
        scratch = Path(scratch_name)
        pki = make_pki(scratch / "pki", ["upstream.invalid"])
        upstream = Upstream(pki, hosts)
        upstream.start()
        upstream.warm(pki, [*hosts, OUT_OF_SCOPE, *(n for names in fresh for n in names)])
        try:
            with proxies(scratch, upstream, pki) as started:
                print(f"  proxies started ({time.monotonic() - began:.0f} s)", flush=True)
                *running, passing = started
                by_name = {proxy.name: proxy for proxy in running}
                routes = {
                    ROUTES[0]: {
                        "port": by_name[PROXIES[0]].port,
                        "ca": [str(by_name[PROXIES[0]].ca)],
                    },
                    # trusting the proxy's CA too: were the tunnel intercepted, it would still
                    # work, and the issuer the client was shown would say so
                    ROUTES[1]: {
                        "port": by_name[PROXIES[1]].port,
                        "ca": [str(pki.ca_pem), str(by_name[PROXIES[1]].ca)],
                    },
                    ROUTES[2]: {
                        "direct": [OUT_OF_SCOPE, upstream.routes["default"][1]],
                        "ca": [str(pki.ca_pem)],
                    },
                    ROUTES[3]: {"port": passing.port, "ca": [str(pki.ca_pem), str(passing.ca)]},
                }
                warm_up(running, routes, scratch, mix, outside)
                for r in range(s.rounds):
                    order = running if r % 2 == 0 else running[::-1]
                    for proxy in order:
                        before = upstream.counter[0]
                        measure_proxy(proxy, scratch, s, mix, fresh[r], raw[proxy.name])
                        upstream_connections[proxy.name].append(upstream.counter[0] - before)
                    for label in ROUTES if r % 2 == 0 else ROUTES[::-1]:
                        measure_route(label, routes[label], scratch, s, outside, raw[label])
                    print(
                        f"  round {r + 1}/{s.rounds} done ({time.monotonic() - began:.0f} s)",
                        flush=True,
                    )
                memory = {proxy.name: proxy.rss_mib() for proxy in running}
                logged = {proxy.name: proxy.flow_lines() for proxy in running}
                imported = {p.name: p.imported for p in running if p.imported is not None}
                ca_names = {p.name: certificate_issuer(p.ca) for p in running}
                ca_names["upstream"] = certificate_issuer(pki.ca_pem)
        finally:
            upstream.stop()
    report(
        raw,
        upstream_connections,
        memory,
        logged,
        imported,
        ca_names,
        out,
        s,
        hosts,
        mix,
        time.monotonic() - began,
        load_before,
    )


def certificate_issuer(pem: Path) -> str:
    """The common name of the CA certificate in `pem` (what loadgen reports as the issuer)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    certificate = x509.load_pem_x509_certificate(pem.read_bytes())
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else "?"


def warm_up(
    running: list[Proxy],
    routes: dict[str, dict[str, Any]],
    scratch: Path,
    mix: list[list[Any]],
    outside: list[list[Any]],
) -> None:
    """Every host once over each transport through each proxy, and the out-of-scope host."""
    for proxy in running:
        drive(proxy, scratch, {"kind": "http", "mix": mix, "seconds": 1.0, "connections": 2})
        spec = {"kind": "https", "mix": mix, "seconds": 1.5, "connections": 2}
        drive(proxy, scratch, {**spec, "per_connection": PER_CONNECTION})
    for label, route in routes.items():
        spec = {"kind": "https", "mix": outside, "seconds": 0.5, "connections": 2}
        loadgen(label, scratch, {**route, **spec, "per_connection": PER_CONNECTION})


def measure_proxy(
    proxy: Proxy,
    scratch: Path,
    s: Settings,
    mix: list[list[Any]],
    fresh: list[str],
    record: dict[str, list[Any]],
) -> None:
    """One round's windows through one proxy: throughput over HTTP and HTTPS, latency over
    HTTP and HTTPS at a fixed rate, first and repeated handshakes."""
    throughput = {"mix": mix, "seconds": s.window, "connections": s.connections}
    spec = {"kind": "http", **throughput, "wrk": s.wrk}
    record.setdefault("http", []).append(drive(proxy, scratch, spec))
    spec = {"kind": "https", **throughput, "per_connection": PER_CONNECTION}
    record.setdefault("https", []).append(drive(proxy, scratch, spec))
    latency = {"mix": mix, "seconds": s.latency_seconds, "rate": s.rate}
    record.setdefault("latency", []).append(drive(proxy, scratch, {"kind": "latency", **latency}))
    spec = {"kind": "https_latency", **latency}
    record.setdefault("https_latency", []).append(drive(proxy, scratch, spec))
    spec = {"kind": "handshake", "names": fresh}
    record.setdefault("handshake", []).append(drive(proxy, scratch, spec))


def measure_route(
    label: str,
    route: dict[str, Any],
    scratch: Path,
    s: Settings,
    outside: list[list[Any]],
    record: dict[str, list[Any]],
) -> None:
    """One round's windows to the host no site lists: HTTPS throughput (a new connection every
    20 requests), latency at a fixed rate on one keep-alive connection, new connections."""
    spec = {"kind": "https", "mix": outside, "seconds": s.window, "connections": s.connections}
    spec["per_connection"] = PER_CONNECTION
    record.setdefault("https", []).append(loadgen(label, scratch, {**route, **spec}))
    spec = {"kind": "https_latency", "mix": outside, "seconds": s.latency_seconds, "rate": s.rate}
    record.setdefault("https_latency", []).append(loadgen(label, scratch, {**route, **spec}))
    spec = {"kind": "connects", "mix": outside, "count": s.new_connections, "pause": 0.01}
    record.setdefault("connects", []).append(loadgen(label, scratch, {**route, **spec}))


def _sum_counts(results: list[dict[str, Any]], key: str) -> dict[str, int]:
    total: dict[str, int] = {}
    for result in results:
        for name, count in result.get(key, {}).items():
            total[name] = total.get(name, 0) + count
    return total


def _quantiles(
    mine: list[dict[str, Any]],
    base: list[dict[str, Any]],
    key: str,
    out: dict[str, Any],
    prefix: str,
) -> None:
    """p50 and p99 of `key` per round, and the difference from the baseline's in that round."""
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        mine_q = [_percentile(x[key], q) for x in mine]
        base_q = [_percentile(x[key], q) for x in base]
        out[f"{prefix}_{label}_ms"] = _spread(mine_q)
        out[f"{prefix}_{label}_added_ms"] = _spread(
            [m - b for m, b in zip(mine_q, base_q, strict=True)]
        )


def proxy_figures(mine: dict[str, list[Any]], bare: dict[str, list[Any]]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for transport in ("http", "https"):
        rates = [x["requests_per_s"] for x in mine[transport]]
        figures[f"{transport}_requests_per_s"] = _spread(rates)
        figures[f"{transport}_ratio"] = _spread(
            [x / b["requests_per_s"] for x, b in zip(rates, bare[transport], strict=True)]
        )
        figures[f"{transport}_errors"] = sum(x["errors"] for x in mine[transport])
        figures[f"{transport}_statuses"] = _sum_counts(mine[transport], "statuses")
    figures["https_issuers"] = _sum_counts(mine["https"], "issuers")
    connects = [statistics.median(x["connects_ms"]) for x in mine["https"] if x["connects_ms"]]
    figures["https_connect_ms"] = _spread(connects)
    _quantiles(mine["latency"], bare["latency"], "latencies_ms", figures, "latency")
    _quantiles(
        mine["https_latency"], bare["https_latency"], "latencies_ms", figures, "https_latency"
    )
    figures["latency_errors"] = sum(x["errors"] for x in mine["latency"] + mine["https_latency"])
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
    return figures


def route_figures(
    mine: dict[str, list[Any]], intercepting: dict[str, list[Any]], direct: dict[str, list[Any]]
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    rates = [x["requests_per_s"] for x in mine["https"]]
    figures["https_requests_per_s"] = _spread(rates)
    figures["https_ratio_to_bare_intercepting"] = _spread(
        [x / b["requests_per_s"] for x, b in zip(rates, intercepting["https"], strict=True)]
    )
    figures["https_errors"] = sum(x["errors"] for x in mine["https"])
    figures["issuers"] = _sum_counts(
        mine["https"] + mine["https_latency"] + mine["connects"], "issuers"
    )
    _quantiles(mine["https_latency"], direct["https_latency"], "latencies_ms", figures, "request")
    for key, prefix in (("connect_ms", "new_connection"), ("request_ms", "first_request")):
        mine_m = [statistics.median(x[key]) for x in mine["connects"]]
        base_m = [statistics.median(x[key]) for x in direct["connects"]]
        figures[f"{prefix}_ms"] = _spread(mine_m)
        figures[f"{prefix}_added_ms"] = _spread(
            [m - b for m, b in zip(mine_m, base_m, strict=True)]
        )
    figures["errors"] = sum(x["errors"] for x in mine["https_latency"] + mine["connects"])
    return figures


def report(
    raw: dict[str, dict[str, list[Any]]],
    upstream_connections: dict[str, list[int]],
    memory: dict[str, float | None],
    logged: dict[str, int | None],
    imported: dict[str, dict[str, Any]],
    ca_names: dict[str, str],
    out: Path,
    s: Settings,
    hosts: list[str],
    mix: list[list[Any]],
    wall: float,
    load_before: tuple[float, float, float],
) -> None:
    bare = raw[PROXIES[0]]
    summary: dict[str, Any] = {}
    for name in PROXIES:
        figures = proxy_figures(raw[name], bare)
        figures["upstream_connections_per_http_window"] = upstream_connections[name]
        figures["rss_mib_at_end"] = memory.get(name)
        figures["flow_lines_logged"] = logged.get(name)
        if name in imported:
            figures["imported"] = imported[name]
        summary[name] = figures
    for label in ROUTES:
        summary[f"out of scope: {label}"] = route_figures(
            raw[label], raw[ROUTES[0]], raw[ROUTES[2]]
        )

    about = machine(load_before)
    print(
        f"proxy comparison ({s.rounds} rounds, {len(hosts)} hosts, {s.connections} connections,"
        f" {s.window:g} s windows; plain HTTP sent by {'wrk' if s.wrk else 'loadgen.py'}, the"
        " rest by loadgen.py; median (min-max) over rounds, each against bare mitmdump in the"
        " same round):"
    )
    for name in PROXIES:
        f = summary[name]
        print(f"  {name}")
        if "imported" in f:
            print(
                f"    {f['imported']['rules_imported']:,} rules imported with `shopguard policy"
                f" import abp` from a {RULES:,}-rule list (synthetic;"
                f" {f['imported']['rules_matching_the_mix']} match requests of the mix)"
            )
        for transport, label in (("http", "HTTP/1.1 keep-alive"), ("https", "HTTPS via CONNECT")):
            line = (
                f"    {label:<20} {f[f'{transport}_requests_per_s']['median']:7.0f} req/s"
                f"  {_fmt(f[f'{transport}_ratio'])}"
            )
            if f[f"{transport}_errors"]:
                line += f"  {f[f'{transport}_errors']} errors"
            print(line)
        for prefix, label in (("latency", "HTTP "), ("https_latency", "HTTPS")):
            if name == PROXIES[0]:
                print(
                    f"    {label} latency at {s.rate:.0f}/s:"
                    f" p50 {_fmt(f[f'{prefix}_p50_ms'], ' ms')},"
                    f" p99 {_fmt(f[f'{prefix}_p99_ms'], ' ms')}"
                )
            else:
                print(
                    f"    {label} latency at {s.rate:.0f}/s added: p50"
                    f" {_fmt(f[f'{prefix}_p50_added_ms'], ' ms')},"
                    f" p99 {_fmt(f[f'{prefix}_p99_added_ms'], ' ms')}"
                )
        print(
            f"    CONNECT+TLS handshake: first per host {_fmt(f['handshake_first_ms'], ' ms', 1)},"
            f" repeated {_fmt(f['handshake_repeat_ms'], ' ms', 1)}"
            + ("" if name == PROXIES[0] else f"; first {_fmt(f['handshake_first_ratio'])}")
        )
        rss = f["rss_mib_at_end"]
        line = f"    RSS at the end {rss:.0f} MiB" if rss is not None else "    RSS unknown"
        if f["flow_lines_logged"] is not None:
            line += f"; {f['flow_lines_logged']} flow lines logged (warm-up included)"
        print(line)
        answered = {k: v for k, v in f["https_statuses"].items() if k != "200"}
        if answered:
            print(f"    answered by the proxy itself (HTTPS, all rounds): {answered}")
    tunnel = summary[f"out of scope: {ROUTES[1]}"]
    intercepting = summary[f"out of scope: {ROUTES[0]}"]
    direct = summary[f"out of scope: {ROUTES[2]}"]
    passing = summary[f"out of scope: {ROUTES[3]}"]
    print(f"  out of scope: HTTPS to {OUT_OF_SCOPE} (no site lists it)")
    for label, f in zip(ROUTES, (intercepting, tunnel, direct, passing), strict=True):
        print(
            f"    {label:<31} {f['https_requests_per_s']['median']:7.0f} req/s"
            f"  certificates issued by {', '.join(sorted(f['issuers'])) or 'nobody'}"
            + (
                f"  {f['https_errors'] + f['errors']} errors"
                if f["https_errors"] + f["errors"]
                else ""
            )
        )
    intercepted = set(tunnel["issuers"]) != {ca_names["upstream"]}
    print(
        f"    shopguard {'INTERCEPTED it' if intercepted else 'did not intercept it'}: the client"
        f" was shown the upstream's certificates ({ca_names['upstream']!r}),"
        f" not shopguard's CA's ({ca_names[PROXIES[1]]!r})"
        if not intercepted
        else f"    shopguard INTERCEPTED it: issuers {tunnel['issuers']}"
    )
    print(
        "    shopguard tunnel vs bare mitmdump intercepting:"
        f" {_fmt(tunnel['https_ratio_to_bare_intercepting'])}"
    )
    for label, f in ((ROUTES[1], tunnel), (ROUTES[3], passing), (ROUTES[0], intercepting)):
        print(
            f"    {label} vs no proxy: per request p50 {_fmt(f['request_p50_added_ms'], ' ms')},"
            f" p99 {_fmt(f['request_p99_added_ms'], ' ms')}; per new connection"
            f" {_fmt(f['new_connection_added_ms'], ' ms')}"
        )
    print(
        f"    no proxy: request p50 {_fmt(direct['request_p50_ms'], ' ms')}, new connection"
        f" {_fmt(direct['new_connection_ms'], ' ms')}"
    )
    print(
        f"  {about['cores']} cores ({about['cpu']}), Python {about['python']}, mitmproxy"
        f" {about['mitmproxy']}; load average {load_before[0]:.1f} before,"
        f" {about['load_average_after'][0]:.1f} after (other work widens the spreads)"
    )
    print(f"  wall time {wall:.0f} s")
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": about,
        "settings": {
            "quick": s.quick,
            "rounds": s.rounds,
            "window_s": s.window,
            "latency_window_s": s.latency_seconds,
            "latency_rate_per_s": s.rate,
            "connections": s.connections,
            "http_client": "wrk" if s.wrk else "loadgen.py",
            "requests_per_https_connection": PER_CONNECTION,
            "handshake_hosts": s.handshake_hosts,
            "new_connections": s.new_connections,
            "block_list_rules": RULES,
            "hosts": hosts,
            "out_of_scope_host": OUT_OF_SCOPE,
            "mix_requests": len(mix),
        },
        "certificate_authorities": ca_names,
        "out_of_scope_intercepted": intercepted,
        "summary": summary,
        "wall_s": wall,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"  written to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
