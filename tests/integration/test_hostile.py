"""Hostile input through a live `shopguard run`, in observe and in enforce mode.

A seeded generator (`tests.support.fuzz`) sends a few thousand malformed, oversized and
personal-data-laden requests over HTTP/1.1 (plain and inside CONNECT/TLS), HTTP/2 inside CONNECT
and WebSocket, a bounded pool of clients at a time. Then: the proxy is still up and stayed under
500 MB; every request that reached the fake market has exactly one `flow` line; every line
parses and follows the schema; and no action is logged as applied that was not (a blocked
request never reached the market, a stripped field is not in what it received, a replaced value
did not leave). The seed is printed; `SHOPGUARD_FUZZ_SEED=N` runs another one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
from mitmproxy.net import encoding

from tests.support.certs import UpstreamPKI
from tests.support.fuzz import (
    PROFILE_FILE,
    Case,
    H1Client,
    H2Client,
    Outcome,
    generate,
    h2_works,
    personal_tokens,
    send_ws,
)
from tests.support.logschema import raw_problem
from tests.support.market import API, HostileMarket, Received
from tests.support.proxy import Proxy, start_proxy

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("SHOPGUARD_FUZZ_SEED", "20261126"))
COUNT = int(os.environ.get("SHOPGUARD_FUZZ_COUNT", "2000"))  # requests per mode
WORKERS = 12  # clients at a time, per mode
RSS_LIMIT_KB = 500 * 1024

SITE_FILE = """\
extends: default
trackers:
  strip_fields: [umidToken]
  strip_headers: [x-umt]
fields:
  default: log
  phone: strip
  email: strip
  name: replace
  id_number: block
"""
SETTINGS = "log:\n  rotate_bytes: 1GiB\n"


@dataclass
class Run:
    """One mode's run: what was sent, what the market received, what the proxy logged."""

    mode: str
    proxy: Proxy
    cases: dict[str, Case]
    outcomes: dict[str, Outcome]
    received: dict[str, list[Received]]
    lines: list[dict[str, Any]]
    raw_lines: list[str]
    peak_rss_kb: int
    alive: bool
    seconds: float
    settle_seconds: float  # of `seconds`: the wait for the lines after the last answer
    unchecked: Counter[str] = field(default_factory=Counter)

    def flows(self) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for line in self.lines:
            if line.get("event") == "flow":
                found[case_id(str(line.get("path", "")))].append(line)
        return found

    def ws_lines(self) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for line in self.lines:
            if line.get("event") == "ws_message":
                match = re.match(r"ws-(z\d+)\.", str(line.get("host", "")))
                found[match.group(1) if match else ""].append(line)
        return found


def case_id(path: str) -> str:
    """The case id of a request path (`/z00042/…`), as sent, received or logged."""
    match = re.match(r"(?:https?://[^/]*)?/(z\d{5})(?:[/?;#]|$)", path)
    return match.group(1) if match else ""


def peak_rss_kb(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def send_all(proxy: Proxy, cases: list[Case]) -> dict[str, Outcome]:
    """Every case through the proxy, `WORKERS` clients at a time, each with its own
    connections (kept alive between requests, opened again after an error)."""
    local = threading.local()
    opened: list[H1Client | H2Client] = []
    lock = threading.Lock()

    def one(case: Case) -> tuple[str, Outcome]:
        started = time.monotonic()
        cid, outcome = _one(case)
        outcome.seconds = time.monotonic() - started
        return cid, outcome

    def _one(case: Case) -> tuple[str, Outcome]:
        if not hasattr(local, "clients"):
            local.clients = {
                "h1": H1Client(proxy.port, proxy.ca, tls=False),
                "h1s": H1Client(proxy.port, proxy.ca, tls=True),
                "h2": H2Client(proxy.port, proxy.ca),
            }
            with lock:
                opened.extend(local.clients.values())
        if case.transport == "ws":
            return case.id, send_ws(proxy.port, proxy.ca, case, tls=int(case.id[1:]) % 2 == 0)
        try:
            return case.id, local.clients[case.transport].send(case)
        except (OSError, ConnectionError) as exc:
            return case.id, Outcome(None, f"{type(exc).__name__}: {exc}"[:200])

    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            return dict(pool.map(one, cases))
    finally:
        for client in opened:
            client.close()


def settle(
    proxy: Proxy, market: HostileMarket, in_scope: set[str], timeout: float = 20.0
) -> list[str]:
    """The log's lines once every request of `in_scope` (case ids) the market received has its
    line (or `timeout` passed: the checks then say which have none). Out-of-scope requests are
    never logged, so they are not waited for."""
    deadline = time.monotonic() + timeout
    while True:
        text = proxy.log.read_text(encoding="utf-8") if proxy.log.exists() else ""
        raw = text.splitlines()
        logged = set()
        for item in raw:
            with contextlib.suppress(ValueError):
                logged.add(case_id(str(json.loads(item).get("path", ""))))
        with market.recorder.lock:
            reached = {case_id(r.path) for r in market.recorder.requests if r.method != "WS"}
        if reached & in_scope <= logged or time.monotonic() > deadline:
            return raw
        time.sleep(0.2)


MODES = ("observe", "enforce")


def start_hostile_proxy(home: Path, mode: str, market: HostileMarket, pki: UpstreamPKI) -> Proxy:
    config = home / "config-dir"
    (config / "sites").mkdir(parents=True)
    (config / "sites" / "taobao.yaml").write_text(SITE_FILE, encoding="utf-8")
    (config / "shopguard.yaml").write_text(SETTINGS, encoding="utf-8")
    profile = home / "profile.yaml"
    profile.write_text(PROFILE_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    profile.chmod(0o600)
    return start_proxy(
        home,
        "--mode",
        mode,
        "--config",
        str(config),
        "--profile",
        str(profile),
        # lazy: the client's TLS is set up before the upstream's, so a client that offers h2
        # gets it (the fake market speaks HTTP/1.1 only; mitmproxy translates)
        "--set",
        "connection_strategy=lazy",
        routes=market.routes,
        upstream_ca=pki.ca_pem,
    )


def hostile_run(mode: str, proxy: Proxy, market: HostileMarket, cases: list[Case]) -> Run:
    """Send every case, wait for the log, and collect what each side saw."""
    started = time.monotonic()
    outcomes = send_all(proxy, cases)
    answered = time.monotonic()
    raw = settle(proxy, market, {c.id for c in cases if c.in_scope})
    settled = time.monotonic()
    alive = proxy.process.poll() is None
    peak = peak_rss_kb(proxy.process.pid) if alive else 0
    lines = []
    for item in raw:
        with contextlib.suppress(ValueError):
            lines.append(json.loads(item))
    received: dict[str, list[Received]] = defaultdict(list)
    with market.recorder.lock:
        for item in market.recorder.requests:
            received[case_id(item.path)].append(item)
    by_id = {c.id: c for c in cases}
    seconds, waited = settled - started, settled - answered
    return Run(mode, proxy, by_id, outcomes, received, lines, raw, peak, alive, seconds, waited)


def summary(run: Run) -> str:
    cases = list(run.cases.values())
    answered = Counter(
        (c.transport, "answered" if run.outcomes[c.id].status else "no answer") for c in cases
    )
    errors = Counter(run.outcomes[c.id].error[:40] for c in cases if run.outcomes[c.id].error)
    slowest = sorted(cases, key=lambda c: run.outcomes[c.id].seconds, reverse=True)[:5]
    return (
        f"  {run.mode}: {len(cases)} cases in {run.seconds:.1f} s "
        f"(the lines {run.settle_seconds:.1f} s after the last answer), "
        f"{sum(1 for c in cases if c.id in run.received)} reached the market, "
        f"{len(run.lines)} log lines, peak RSS {run.peak_rss_kb // 1024} MB\n"
        f"    {sorted(answered.items())}\n    client errors: {errors.most_common(6)}\n"
        "    slowest: "
        + ", ".join(
            f"{c.id} {c.transport} {c.kind} {run.outcomes[c.id].seconds:.1f} s" for c in slowest
        )
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, pki: UpstreamPKI) -> Iterator[dict[str, Run]]:
    """Both modes at once, each its own proxy and market (the machine's cores are shared)."""
    print(f"\nhostile input: seed {SEED} (SHOPGUARD_FUZZ_SEED=N for another), {COUNT} cases a mode")
    markets = {mode: HostileMarket(pki).start() for mode in MODES}
    homes = {mode: tmp_path_factory.mktemp(f"hostile-{mode}") for mode in MODES}
    proxies: dict[str, Proxy] = {}
    try:
        with ThreadPoolExecutor(len(MODES)) as pool:
            starting = {
                mode: pool.submit(start_hostile_proxy, homes[mode], mode, markets[mode], pki)
                for mode in MODES
            }
            try:
                cases = generate(SEED, COUNT)  # while the proxies start (the bombs take seconds)
            finally:
                for mode, future in starting.items():
                    if future.exception() is None:
                        proxies[mode] = future.result()
            for future in starting.values():
                future.result()  # a proxy that did not start fails the run here
        for proxy in proxies.values():
            assert h2_works(proxy.port, proxy.ca, API), "no h2 offered"
        with ThreadPoolExecutor(len(MODES)) as pool:
            futures = {
                mode: pool.submit(hostile_run, mode, proxies[mode], markets[mode], cases)
                for mode in MODES
            }
            done = {mode: future.result() for mode, future in futures.items()}
        for result in done.values():
            print(summary(result))
        yield done
    finally:
        for proxy in proxies.values():  # both shut down at once; then each is waited for
            if proxy.process.poll() is None:
                proxy.process.terminate()
        for proxy in proxies.values():
            proxy.stop()
        for market in markets.values():
            market.stop()


@pytest.fixture(params=MODES)
def run(request: pytest.FixtureRequest, runs: dict[str, Run]) -> Run:
    return runs[request.param]


# --- the proxy survives -------------------------------------------------------------------------


def test_the_run_sent_enough_of_every_transport(run: Run) -> None:
    sent = Counter(c.transport for c in run.cases.values())
    assert len(run.cases) >= 2000
    answered = Counter(c.transport for c in run.cases.values() if run.outcomes[c.id].status)
    for transport in ("h1", "h1s", "h2", "ws"):
        assert sent[transport] >= 100, sent
        assert answered[transport] >= sent[transport] // 2, (transport, answered, sent)
    kinds = Counter(c.kind for c in run.cases.values())
    assert {"bomb", "deep_json", "huge_cookie", "personal_names", "multipart"} <= set(kinds)
    assert 1 <= sum(1 for c in run.cases.values() if len(c.body) >= 10 * 1024 * 1024) <= 10


def test_the_proxy_stays_up(run: Run) -> None:
    assert run.alive, run.proxy.stderr_path.read_text(errors="replace")[-3000:]
    with socket.create_connection(("127.0.0.1", run.proxy.port), timeout=10) as sock:
        sock.sendall(
            b"GET http://www.taobao.com/z99999/alive HTTP/1.1\r\nHost: www.taobao.com\r\n\r\n"
        )
        assert sock.recv(12).startswith(b"HTTP/1.1 200")


def test_its_memory_stays_under_500_mb(run: Run) -> None:
    assert run.alive
    assert 0 < run.peak_rss_kb < RSS_LIMIT_KB, f"peak RSS {run.peak_rss_kb // 1024} MB"


def test_no_bad_input_is_an_addon_error(run: Run) -> None:
    """Bad input must not make an addon fail (the README: an `addon_error` is a bug)."""
    errors = [x for x in run.lines if x.get("event") == "addon_error" or "addon_error" in x]
    assert not errors, errors[:5]


# --- the log -----------------------------------------------------------------------------------


def test_every_line_parses_and_follows_the_schema(run: Run) -> None:
    bad = []
    for number, raw in enumerate(run.raw_lines, start=1):
        if found := raw_problem(raw):
            bad.append(f"line {number}: {found}: {raw[:300]}")
    assert not bad, "\n".join(bad[:10])


def test_every_request_that_reached_the_market_has_exactly_one_line(run: Run) -> None:
    flows = run.flows()
    missing, doubled = [], []
    for cid, received in run.received.items():
        case = run.cases.get(cid)
        if case is None or not case.in_scope or not any(r.method != "WS" for r in received):
            continue
        count = len(flows.get(cid, []))
        if count == 0:
            missing.append(f"{cid} {case.transport} {case.kind} {case.method!r} {case.path[:80]!r}")
        elif count > 1:
            doubled.append(f"{cid} {case.kind}: {count} lines")
    assert not missing, f"{len(missing)} reached the market without a line:\n" + "\n".join(
        missing[:20]
    )
    assert not doubled, "\n".join(doubled[:20])


def test_out_of_scope_requests_are_relayed_and_never_logged(run: Run) -> None:
    flows = run.flows()
    outside = [c for c in run.cases.values() if not c.in_scope]
    assert outside
    assert all(c.id not in flows for c in outside), [c.id for c in outside if c.id in flows]
    assert any(c.id in run.received for c in outside)


def test_no_ws_message_line_without_its_connection(run: Run) -> None:
    flows = run.flows()
    ws = run.ws_lines()
    assert ws, "no WebSocket message was logged"
    assert all(cid in flows for cid in ws), sorted(set(ws) - set(flows))[:10]


# --- no action logged as applied that was not ----------------------------------------------------


def test_a_request_logged_blocked_never_reached_the_market(run: Run) -> None:
    blocked = 0
    for cid, lines in run.flows().items():
        for line in lines:
            for action in line.get("actions", []):
                if action["action"] == "block" and action["applied"]:
                    blocked += 1
                    arrived = [r for r in run.received.get(cid, []) if r.method != "WS"]
                    assert not arrived, (cid, run.cases[cid].kind, action)
    if run.mode == "enforce":
        assert blocked >= 50  # the tracker host and id numbers: the check is not empty
    else:
        assert blocked == 0


def test_a_ws_message_logged_blocked_never_reached_the_market(run: Run) -> None:
    for cid, lines in run.ws_lines().items():
        for line in lines:
            if any(a["action"] == "block" and a["applied"] for a in line["actions"]):
                messages = [r for r in run.received.get(cid, []) if r.method == "WS"]
                assert not messages, (cid, line)


def test_a_field_logged_stripped_is_not_in_what_the_market_received(run: Run) -> None:
    checked, wrong = 0, []
    for cid, lines in run.flows().items():
        arrived = [r for r in run.received.get(cid, []) if r.method != "WS"]
        if not arrived:
            continue
        for line in lines:
            for action in line.get("actions", []):
                if action["action"] != "strip" or not action["applied"]:
                    continue
                values = values_at(arrived[0], action["target"], run.unchecked)
                if values is None:
                    continue
                checked += 1
                if values:
                    wrong.append(f"{cid} {run.cases[cid].kind} {action['target']}: {values[:3]}")
    for cid, lines in run.ws_lines().items():
        messages = [r for r in run.received.get(cid, []) if r.method == "WS"]
        for line in lines:
            for action in line["actions"]:
                if action["action"] == "strip" and action["applied"] and messages:
                    values = values_at(messages[0], action["target"], run.unchecked)
                    if values is not None:
                        checked += 1
                        if values:
                            wrong.append(f"{cid} ws {action['target']}: {values[:3]}")
    print(f"  {run.mode}: {checked} applied strips checked; not checkable: {dict(run.unchecked)}")
    assert not wrong, "\n".join(wrong[:20])
    if run.mode == "enforce":
        assert checked >= 100


def test_a_value_logged_replaced_did_not_leave(run: Run) -> None:
    checked, wrong = 0, []
    for cid, lines in run.flows().items():
        arrived = [r for r in run.received.get(cid, []) if r.method != "WS"]
        if not arrived:
            continue
        sent = as_received(run.cases[cid])
        for line in lines:
            for action in line.get("actions", []):
                if action["action"] != "replace" or not action["applied"]:
                    continue
                before = values_at(sent, action["target"], run.unchecked)
                after = values_at(arrived[0], action["target"], run.unchecked)
                if not before or after is None:
                    continue
                checked += 1
                kept = [v for v in before if v in after]
                if kept:
                    wrong.append(f"{cid} {run.cases[cid].kind} {action['target']} kept {kept[:2]}")
    assert not wrong, "\n".join(wrong[:20])
    if run.mode == "enforce":
        assert checked >= 20


def test_nothing_is_applied_in_observe_mode(run: Run) -> None:
    if run.mode != "observe":
        pytest.skip("enforce mode applies")
    applied = [
        (x.get("path"), a)
        for x in run.lines
        for a in x.get("actions", [])
        if a["applied"] and a.get("reason") != "log unavailable"
    ]
    assert not applied, applied[:5]


# --- locations, as the market received the request ------------------------------------------------

STEP = re.compile(r"\.\$|\.[^.\[#/]+|\[\d+\]|#[^.\[#/]+|/[^.\[#/]+")


def as_received(case: Case) -> Received:
    """The case as the market would have received it untouched."""
    headers: dict[str, str] = {}
    for name, value in case.headers:
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        headers[key] = (
            f"{headers[key]}; {text}" if key.lower() == "cookie" and key in headers else text
        )
    return Received(
        "https", case.host, case.method.decode(), case.path.decode("latin-1"), headers, case.body
    )


def _body(received: Received) -> tuple[str, bytes] | None:
    headers = {k.lower(): v for k, v in received.headers.items()}
    body = received.body
    coding = headers.get("content-encoding", "").strip()
    if coding and coding != "identity":
        if len(body) > 4 * 1024 * 1024:
            return None
        try:
            body = encoding.decode(body, coding)
        except ValueError:
            return None
        if len(body) > 64 * 1024 * 1024:
            return None
    return headers.get("content-type", ""), body


def _pairs(text: str) -> list[tuple[str, str]]:
    return parse_qsl(text, keep_blank_values=True)


def values_at(received: Received, target: str, unchecked: Counter[str]) -> list[Any] | None:
    """The values found at `target` (a location) in a received request or message; None when
    the test cannot tell (a masked name, a step it does not follow, a body it cannot read)."""
    kind, _, rest = target.partition(":")
    first_match = re.match(r"\$|[^.\[#/]+", rest)
    if not first_match or "{" in rest:
        unchecked[f"{kind} (masked or odd name)"] += 1
        return None
    first = unquote(first_match.group(0))
    steps = STEP.findall(rest[first_match.end() :])
    if "".join(steps) != rest[first_match.end() :]:
        unchecked[f"{kind} (steps)"] += 1
        return None
    values: list[Any]
    if kind == "query":
        values = [v for k, v in _pairs(urlsplit(received.path).query) if k == first]
    elif kind == "header":
        values = [v for k, v in received.headers.items() if k.lower() == first.lower()]
    elif kind == "cookie":
        cookies = "; ".join(v for k, v in received.headers.items() if k.lower() == "cookie")
        values = []
        for part in cookies.split(";"):
            name, _, value = part.strip().partition("=")
            if name == first:
                values.append(value)
    elif kind in ("body.form", "body", "ws"):
        if kind == "ws":
            content_type, body = "", received.body
        else:
            read = _body(received)
            if read is None:
                unchecked[f"{kind} (unreadable body)"] += 1
                return None
            content_type, body = read
        if kind == "body.form":
            if "multipart" in content_type:
                if steps:
                    unchecked["body.form (multipart steps)"] += 1
                    return None
                marker = f'name="{first}"'.encode()
                return [marker.decode()] if marker in body else []
            values = [v for k, v in _pairs(body.decode("utf-8", "replace")) if k == first]
        else:
            try:
                values = [json.loads(body.decode("utf-8"))]
            except (ValueError, RecursionError):
                unchecked[f"{kind} (not JSON)"] += 1
                return None
    else:
        unchecked[kind] += 1
        return None
    for step in steps:
        values = _step(values, step)
        if values is None:
            unchecked[f"{kind} (step {step[:2]})"] += 1
            return None
    return values


def _step(values: list[Any], step: str) -> list[Any] | None:
    out: list[Any] = []
    for value in values:
        if step == ".$":
            try:
                out.append(json.loads(value))
            except (ValueError, TypeError, RecursionError):
                return None
        elif step.startswith("["):
            index = int(step[1:-1])
            if isinstance(value, list) and index < len(value):
                out.append(value[index])
        elif step.startswith("."):
            name = unquote(step[1:])
            if isinstance(value, dict):
                if name in value:
                    out.append(value[name])
            else:
                return None  # a parameter inside a text value: not followed here
        else:
            return None
    return out


# --- what the hostile run found (query names, bare tokens, key names, path parameters, hashed
# values as keys written raw) holds now -----------------------------------------------------------


def test_profile_values_never_reach_the_log(run: Run) -> None:
    """The README: the log holds no personal value in clear (names and bare tokens included)."""
    text = "\n".join(run.raw_lines)
    found = sorted({t for t in personal_tokens() if len(t) >= 6 and t in text})
    assert not found, found
