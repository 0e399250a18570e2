"""From a saved capture to a policy and back, through a real `shopguard run`.

The requests of a HAR file (`tests/fixtures/har/visit.har`: a Taobao search, two item pages and
an order with their aplus beacons, then the Google Ads tag of an AliExpress checkout) are sent,
in order, through a proxy in observe mode to a loopback upstream that records what reaches it.
`shopguard policy suggest --apply` turns the proxy's log into rules in the user's config
directory (empty at first), `shopguard policy check` accepts the result, `mode: enforce` goes
into its `shopguard.yaml`, and once the running proxy has reloaded, the same requests are sent
again: the suggested rules are applied (the log says so, and the upstream never gets what they
strip), the shipped blocks keep the beacons and the remarketing pixel from leaving, what the
shop needs for the order still arrives, and `shopguard report --since` the reload lists the
values as stopped. One proxy for both passes, as a user's would run: it costs one start-up.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from shopguard.cli.scan import read_capture
from tests.support.certs import UpstreamPKI, make_pki
from tests.support.corpus import CORPUS
from tests.support.market import LoopbackServers, Received, Recorder, mtop_verdict
from tests.support.proxy import SHOPGUARD, Proxy, isolated_env, start_proxy
from tests.support.replay import Answers, WireRequest, send

pytestmark = pytest.mark.integration

HAR = Path(__file__).parents[1] / "fixtures" / "har" / "visit.har"
API = "h5api.m.taobao.com"
LINE_WAIT = 5.0  # seconds for a request's flow line to appear in the log
CLI_TIMEOUT = 60.0
RELOAD_WAIT = 15.0  # seconds for the running proxy to pick up the edited configuration
MTOP_CALLS = 5  # two searches, two item pages, the order


def har_requests(path: Path) -> list[WireRequest]:
    """The HAR's entries as `shopguard scan` reads them, as they go on the wire (with the Host
    header and, for a body, the Content-Length that HTTP/1.1 needs)."""
    found = []
    for entry in read_capture(path, 4 * 1024 * 1024):
        request = entry.request
        assert request is not None, f"{path}: entry {entry.index}: {entry.problem}"
        headers = [("Host", urlsplit(request.url).netloc), *request.headers]
        if request.body:
            headers.append(("Content-Length", str(len(request.body))))
        found.append(
            WireRequest(
                flow_id=str(entry.index),
                method=request.method,
                url=request.url,
                headers=tuple(headers),
                body=request.body or b"",
                response_headers=tuple(request.response_headers),
                site="",  # (the proxy routes it; every entry gets its flow line, below)
            )
        )
    return found


class RecordingUpstream(LoopbackServers):
    """Every host over HTTP and HTTPS on loopback: records each request that reaches it and
    answers with the HAR's response headers for it."""

    def __init__(self, pki: UpstreamPKI) -> None:
        self.answers = Answers()
        self.recorder = Recorder()
        super().__init__(pki, self._handler)

    def _handler(self, scheme: str) -> type[BaseHTTPRequestHandler]:
        answers, recorder = self.answers, self.recorder

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                host = (self.headers.get("host") or "").rsplit(":", 1)[0].lower()
                headers = {k.lower(): v for k, v in self.headers.items()}
                recorder.add(Received(scheme, host, self.command, self.path, headers, body))
                self.send_response_only(200)
                for name, value in answers.take((scheme, host, self.command, self.path)):
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_HEAD = do_OPTIONS = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@dataclass
class Run:
    """One pass of the HAR through the proxy: its flow lines and what reached the upstream."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)


@dataclass
class RoundTrip:
    requests: list[WireRequest]
    config: Path
    observe: Run
    suggest: subprocess.CompletedProcess[str]
    check: subprocess.CompletedProcess[str]
    enforce: Run
    report: subprocess.CompletedProcess[str]


def _lines(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines() if x]


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SHOPGUARD, *args],
        env=isolated_env(home) | {"PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=CLI_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def _replay(proxy: Proxy, requests: list[WireRequest], upstream: RecordingUpstream) -> Run:
    """Each request in turn, each time waiting for its flow line."""
    start = len(_lines(proxy.log))
    upstream.recorder.clear()
    for request in requests:
        upstream.answers.queue(request)
        before = len([x for x in _lines(proxy.log)[start:] if x["event"] == "flow"])
        send(proxy.port, request, proxy.ca)
        deadline = time.monotonic() + LINE_WAIT
        while time.monotonic() < deadline:
            if len([x for x in _lines(proxy.log)[start:] if x["event"] == "flow"]) > before:
                break
            time.sleep(0.02)
    lines = [x for x in _lines(proxy.log)[start:] if x["event"] == "flow"]
    return Run(lines, list(upstream.recorder.requests))


def _wait_enforcing(proxy: Proxy, after: int) -> dict[str, Any]:
    """The `policy_loaded` line of the reload that put every site in enforce mode (the proxy
    looks at its files once a second; the suggested site files were written before)."""
    deadline = time.monotonic() + RELOAD_WAIT
    while True:
        lines = _lines(proxy.log)[after:]
        for line in lines:
            if line["event"] == "policy_loaded" and all(
                s["mode"] == "enforce" for s in line["sites"]
            ):
                return line
        rejected = [x["errors"] for x in lines if x["event"] == "policy_rejected"]
        assert not rejected, f"the proxy rejected the new configuration: {rejected}"
        assert time.monotonic() < deadline, "the proxy did not reload its configuration"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def trip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoundTrip]:
    """observe -> suggest --apply -> check -> `mode: enforce` -> the same requests -> report,
    with one proxy that picks up the edited configuration as it runs (as a user's does)."""
    home = tmp_path_factory.mktemp("suggest-roundtrip")
    pki = make_pki(home / "pki", ["upstream.test"])  # each host's certificate is issued by SNI
    upstream = RecordingUpstream(pki).start()
    shutil.copyfile(CORPUS / "profile.yaml", home / "profile.yaml")
    (home / "profile.yaml").chmod(0o600)
    config = home / "my-config"  # the user's own directory, empty at first: observe mode
    config.mkdir()
    requests = har_requests(HAR)
    try:
        proxy = start_proxy(
            home,
            "--config",
            str(config),
            "--profile",
            str(home / "profile.yaml"),
            routes=upstream.routes,
            upstream_ca=pki.ca_pem,
        )
        try:
            observe = _replay(proxy, requests, upstream)
            log = str(proxy.log)
            suggest = _cli(home, "policy", "suggest", log, "--apply", "--config", str(config))
            checked: list[subprocess.CompletedProcess[str]] = []
            checker = threading.Thread(  # (while the proxy reloads: it takes a second)
                target=lambda: checked.append(
                    _cli(home, "policy", "check", "--config", str(config))
                )
            )
            checker.start()
            mark = len(_lines(proxy.log))
            (config / "shopguard.yaml").write_text("mode: enforce\n", encoding="utf-8")
            loaded = _wait_enforcing(proxy, mark)
            enforce = _replay(proxy, requests, upstream)
            checker.join(CLI_TIMEOUT)
            assert checked, "policy check did not finish"
            check = checked[0]
        finally:
            proxy.stop()
        since = loaded["timestamp"]  # what happened once the rules were enforced
        report = _cli(home, "report", log, "--since", since, "--format", "json")
    finally:
        upstream.stop()
    yield RoundTrip(requests, config, observe, suggest, check, enforce, report)


def _cookies(received: Received) -> dict[str, str]:
    pairs = (p.strip().partition("=") for p in received.headers.get("cookie", "").split(";"))
    return {name: value for name, _, value in pairs if name}


def _data(received: Received) -> dict[str, Any]:
    """The mtop call's `data` JSON (query or form body), and the search's nested `params`."""
    query = dict(parse_qsl(urlsplit(received.path).query, keep_blank_values=True))
    form = dict(parse_qsl(received.body.decode("utf-8"), keep_blank_values=True))
    data = json.loads(query.get("data") or form.get("data") or "{}")
    if isinstance(data.get("params"), str):
        data["params"] = json.loads(data["params"])
    return dict(data)


def _mtop(run: Run) -> list[Received]:
    return [r for r in run.received if r.host == API]


def test_observe_mode_lets_everything_through_and_logs_what_it_would_do(trip: RoundTrip) -> None:
    observe = trip.observe
    assert len(observe.lines) == len(trip.requests)
    assert len(observe.received) == len(trip.requests)  # nothing stopped in observe mode
    actions = [a for line in observe.lines for a in line["actions"]]
    assert actions and not any(a["applied"] for a in actions)
    # the visitor ID and the UMID token reach the shop's own API: no shipped rule acts on them
    calls = _mtop(observe)
    assert all("cna" in set(_cookies(r)) for r in calls)
    assert sum("bx-umidtoken" in r.headers for r in calls) == 2


def test_suggest_writes_rules_for_what_left_and_the_check_accepts_them(trip: RoundTrip) -> None:
    assert trip.suggest.returncode == 0, trip.suggest.stderr
    assert "rules added (shopguard policy check passes)" in trip.suggest.stdout
    site_file = trip.config / "sites" / "taobao.yaml"
    assert site_file.exists(), f"nothing suggested for taobao: {trip.suggest.stdout}"
    text = site_file.read_text(encoding="utf-8")
    assert text.startswith("extends: default\n")
    # the visitor cookie on the API host and the UMID header, each with its evidence
    cookies = text.partition("strip_cookies:")[2]
    assert cookies.lstrip().startswith(f'"{API}":') and '- "cna"' in cookies
    assert '- "bx-umidtoken"' in text.partition("strip_headers:")[2]
    assert "# seen 5x" in text and "cookie:cna" in text and "header:bx-umidtoken" in text
    # never what the shop needs to deliver the order, nor its signing and session values
    for name in ("receiverMobile", "receiverName", "receiverAddress", "_m_h5_tk", "cookie2"):
        assert name not in text
    assert '"sign"' not in text
    assert trip.check.returncode == 0, trip.check.stdout + trip.check.stderr


def test_enforce_mode_applies_the_suggested_rules(trip: RoundTrip) -> None:
    enforce = trip.enforce
    assert len(enforce.lines) == len(trip.requests)
    calls = _mtop(enforce)
    assert len(calls) == MTOP_CALLS
    for received in calls:
        cookies = set(_cookies(received))
        assert "cna" not in cookies, f"{received.path[:60]}: the cna cookie still arrived"
        assert {"_m_h5_tk", "cookie2"} <= cookies  # the session stays
        assert "bx-umidtoken" not in received.headers
        assert mtop_verdict(received.path, received.headers, received.body).startswith("SUCCESS")
    user_file = str(trip.config / "sites" / "taobao.yaml")
    stripped: dict[str, int] = {}
    for line in enforce.lines:
        for action in line["actions"]:
            if action["action"] == "strip" and action["rule"].startswith(user_file + ":"):
                assert action["applied"] is True
                stripped[action["target"]] = stripped.get(action["target"], 0) + 1
    assert stripped.get("cookie:cna") == MTOP_CALLS
    assert stripped.get("header:bx-umidtoken") == 2
    for line in enforce.lines:
        for finding in line["findings"]:
            if finding["location"] in ("cookie:cna", "header:bx-umidtoken"):
                assert finding["left"] is False


def test_what_the_shop_needs_for_the_order_still_arrives(trip: RoundTrip) -> None:
    order = next(r for r in trip.requests if "order.create" in r.url)
    sent = _data(Received("https", order.host, order.method, order.target, {}, order.body))
    arrived = next(r for r in _mtop(trip.enforce) if "order.create" in r.path)
    data = _data(arrived)
    for name in ("receiverName", "receiverMobile", "receiverAddress", "postCode"):
        arrived_as_sent = data.get(name) == sent[name]  # (no value in a failure's message)
        assert arrived_as_sent, f"{name} did not arrive as the buyer sent it"


def test_the_shipped_blocks_keep_beacons_and_the_remarketing_pixel_from_leaving(
    trip: RoundTrip,
) -> None:
    assert "log.mmstat.com" not in {r.host for r in trip.enforce.received}  # eg.js, v.gif
    assert not any("viewthroughconversion" in r.path for r in trip.enforce.received)
    blocked = [
        line
        for line in trip.enforce.lines
        if any(a["action"] == "block" and a["applied"] for a in line["actions"])
    ]
    assert len(blocked) == 4  # eg.js, two v.gif beacons, the remarketing pixel
    for line in blocked:
        assert all(f["left"] is False for f in line["findings"] if "left" in f)


def test_report_lists_the_values_as_stopped(trip: RoundTrip) -> None:
    assert trip.report.returncode == 0, trip.report.stderr
    data = json.loads(trip.report.stdout)
    taobao = data["sites"]["taobao"]
    assert taobao["requests"] == 8 and taobao["blocked"] == 3  # eg.js and the two beacons
    sent = {(s["category"], s["host"]): s for s in taobao["sent"]}
    # as the log says: the cookie and the header stopped on every call
    stopped_in_log = sum(
        f["category"] == "tracking_id" and f["left"] is False
        for line in trip.enforce.lines
        if line["host"] == API
        for f in line["findings"]
    )
    assert sent[("tracking_id", API)]["stopped"] == stopped_in_log >= MTOP_CALLS + 2
    assert sent[("ip_address", API)]["stopped"] == sent[("ip_address", API)]["count"] == 5
    for category in ("tracking_id", "ip_address"):
        assert sent[(category, "log.mmstat.com")]["sent"] == 0
    # the order's personal data went to the shop, as the buyer wanted
    assert sent[("phone", API)]["sent"] == 1 and sent[("phone", API)]["stopped"] == 0
    unhandled = {(r["site"], r["host"], r["location"]) for r in data["unhandled"]}
    for location in ("cookie:cna", "header:bx-umidtoken"):
        assert ("taobao", API, location) not in unhandled
    stopped = {(a["target"], a["applied"]) for a in taobao["actions"] if a["action"] == "strip"}
    assert ("cookie:cna", True) in stopped and ("header:bx-umidtoken", True) in stopped


def test_an_identifier_inside_a_query_json_is_stopped(trip: RoundTrip) -> None:
    searches = [r for r in _mtop(trip.enforce) if "wirelessrecommend" in r.path]
    assert len(searches) == 2
    for received in searches:
        assert "myCNA" not in set(_data(received)["params"]), "the copied visitor ID arrived"
        assert mtop_verdict(received.path, received.headers, received.body).startswith("SUCCESS")


def test_a_rule_suggested_for_an_ad_pixel_takes_effect(trip: RoundTrip) -> None:
    assert (trip.config / "sites" / "aliexpress.yaml").exists() or (
        trip.config / "sites" / "third-party-pixels.yaml"
    ).exists(), "no rule was suggested for the hashed e-mail the ad network got"
    arrived = [r for r in trip.enforce.received if "/pagead/conversion/" in r.path]
    assert len(arrived) == 2
    for received in arrived:
        query = dict(parse_qsl(urlsplit(received.path).query, keep_blank_values=True))
        assert "em" not in set(query), "the hashed e-mail still reached the ad network"
