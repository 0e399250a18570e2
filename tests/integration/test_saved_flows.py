"""Flows saved by a real `shopguard run` (`save_stream_file`, what `-w` sets), in observe and in
enforce mode, then read back: by `shopguard scan`, replayed through a second live proxy
(`client_replay`), and loaded by `mitmdump -n -r` with the shopguard addons.

mitmproxy saves `flow.metadata`, so the saved flows carry shopguard's per-flow state; each way
of reading them back must go through every hook without an addon error, and the log lines it
writes follow the log's schema (checked by `tests.support.proxy` and below)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http, io

from tests.support.certs import UpstreamPKI
from tests.support.logschema import validate_file
from tests.support.market import API, BEACON, SHOP, FakeMarket
from tests.support.proxy import SHOPGUARD, Proxy, fetch, isolated_env, start_proxy

pytestmark = pytest.mark.integration

MITMDUMP = str(Path(SHOPGUARD).parent / "mitmdump")
PROFILE = 'phone: ["+86 138 0013 8000"]\n'
EXIT_WAIT = 60.0  # seconds for a replaying proxy or mitmdump to finish on its own
REQUESTS = 4


@dataclass
class Recording:
    mode: str
    home: Path
    profile: Path
    file: Path  # the saved flows
    flows: list[dict[str, Any]]  # the recording proxy's flow lines
    beacon: str  # the blocked tracker's path (unique to this recording)


def send_requests(proxy: Proxy, mode: str) -> str:
    """A page with a phone number and a tracking cookie, an order with the profile's phone, a
    JSON post with an e-mail address, and an aplus beacon the shipped policy blocks."""
    shop = fetch(
        proxy.port,
        f"https://{SHOP}/?mobile=13912345678&spm=a.b&saved={mode}",
        cafile=proxy.ca,
        headers={"cookie": "cna=Zm9vYmFyMTIz"},
    )
    order = fetch(
        proxy.port,
        f"https://{API}/h5/mtop.trade.order.create/1.0/?appKey=12574478&saved={mode}",
        cafile=proxy.ca,
        method="POST",
        headers={"content-type": "application/x-www-form-urlencoded", "origin": f"https://{SHOP}"},
        body=b"data=%7B%22receiverMobile%22%3A%2213800138000%22%7D",
    )
    account = fetch(
        proxy.port,
        f"https://{SHOP}/account?saved={mode}",
        cafile=proxy.ca,
        method="POST",
        headers={"content-type": "application/json"},
        body=json.dumps({"email": "wang.xiaoming@example.com"}).encode(),
    )
    beacon = f"/v.gif?cna=Zm9vYmFyMTIz&saved={mode}"
    tracker = fetch(
        proxy.port,
        f"https://{BEACON}{beacon}",
        cafile=proxy.ca,
        headers={"referer": f"https://{SHOP}/", "sec-fetch-dest": "image"},
    )
    assert (shop.status, order.status, account.status) == (200, 200, 200)
    assert tracker.status == (204 if mode == "enforce" else 200)
    return beacon


@pytest.fixture(scope="module", params=["observe", "enforce"])
def recording(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    market: FakeMarket,
    pki: UpstreamPKI,
) -> Recording:
    mode = request.param
    home = tmp_path_factory.mktemp(f"saved-{mode}")
    profile = home / "profile.yaml"
    profile.write_text(PROFILE, encoding="utf-8")
    profile.chmod(0o600)
    saved = home / "flows.mitm"
    proxy = start_proxy(
        home,
        "--mode",
        mode,
        "--profile",
        str(profile),
        "--set",
        f"save_stream_file={saved}",
        routes=market.routes,
        upstream_ca=pki.ca_pem,
    )
    try:
        beacon = send_requests(proxy, mode)
        proxy.wait_for(lambda x: x["event"] == "flow" and x["host"] == BEACON)  # the last one
    finally:
        proxy.stop()  # (closes the saved file; checks the log's lines)
    flows = proxy.lines("flow")
    assert len(flows) == REQUESTS, flows
    return Recording(mode, home, profile, saved, flows, beacon)


def found(lines: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(host, category, location) of every finding in flow lines."""
    return {(x["host"], f["category"], f["location"]) for x in lines for f in x["findings"]}


def saved_flows(path: Path) -> list[http.HTTPFlow]:
    with path.open("rb") as handle:
        return [f for f in io.FlowReader(handle).stream() if isinstance(f, http.HTTPFlow)]


def no_errors(lines: list[dict[str, Any]], *outputs: str) -> None:
    assert [x for x in lines if x["event"] == "addon_error"] == []
    assert [x for x in lines if "addon_error" in x] == []
    for text in outputs:
        assert "Traceback" not in text and "Addon error" not in text, text


def test_the_saved_flows_carry_what_the_log_says(recording: Recording) -> None:
    assert {(x["host"], x["mode"]) for x in recording.flows} == {
        (SHOP, recording.mode),
        (API, recording.mode),
        (BEACON, recording.mode),
    }
    assert {c for _, c, _ in found(recording.flows)} == {"phone", "email", "tracking_id"}
    flows = saved_flows(recording.file)
    assert len(flows) == REQUESTS
    hosts = sorted(f.request.pretty_host for f in flows)
    assert hosts == sorted(x["host"] for x in recording.flows)
    (beacon,) = [f for f in flows if f.request.pretty_host == BEACON]
    (line,) = [x for x in recording.flows if x["host"] == BEACON]
    (block,) = line["actions"]
    assert block["action"] == "block" and block["applied"] is (recording.mode == "enforce")
    assert beacon.response is not None and beacon.response.status_code == line["status"]


def test_scan_reads_the_saved_file_and_finds_what_the_proxy_found(recording: Recording) -> None:
    profile = str(recording.profile)
    result = subprocess.run(
        [SHOPGUARD, "scan", str(recording.file), "--profile", profile, "--format", "jsonl"],
        env=isolated_env(recording.home),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    scanned = [json.loads(line) for line in result.stdout.splitlines()]
    assert {(x["host"], x["category"], x["location"]) for x in scanned} == found(recording.flows)
    # the same install: the same value has the same fingerprint in the log and in the scan
    logged = {(f["category"], f["fingerprint"]) for x in recording.flows for f in x["findings"]}
    assert {(x["category"], x["fingerprint"]) for x in scanned} == logged
    assert "13800138000" not in result.stdout and "wang.xiaoming" not in result.stdout


@pytest.fixture(params=["same", "other"])
def replayed(
    request: pytest.FixtureRequest, recording: Recording, market: FakeMarket, pki: UpstreamPKI
) -> Iterator[tuple[Proxy, int, str]]:
    """A second live proxy replaying the saved file, in the recording's mode or in the other
    one; it stops by itself once every flow is replayed. Also how often the beacon reached
    upstream before, and the replay's mode."""
    mode = recording.mode
    if request.param == "other":
        mode = "observe" if mode == "enforce" else "enforce"
    before = len(market.recorder.find(BEACON, recording.beacon))
    proxy = start_proxy(
        recording.home,
        "--mode",
        mode,
        "--profile",
        str(recording.profile),
        "--set",
        f"client_replay={recording.file}",
        routes=market.routes,
        upstream_ca=pki.ca_pem,
        log=recording.home / f"replay-{recording.mode}-{mode}.jsonl",
    )
    try:
        try:
            proxy.process.wait(timeout=EXIT_WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the replaying proxy did not stop within {EXIT_WAIT} s")
        yield proxy, before, mode
    finally:
        proxy.stop()


def test_a_replay_through_a_live_proxy_is_logged_as_the_recording(
    recording: Recording, replayed: tuple[Proxy, int, str], market: FakeMarket
) -> None:
    """A replayed request is a request of its own: it gets its own line, in the replaying
    proxy's mode, with its own findings and actions (not the saved flow's state)."""
    proxy, before, mode = replayed
    assert proxy.process.returncode == 0, proxy.output.text
    lines = proxy.lines()  # (each checked against the schema)
    no_errors(lines, proxy.output.text, proxy.stderr_path.read_text())
    flows = [x for x in lines if x["event"] == "flow"]
    assert sorted(x["host"] for x in flows) == sorted(x["host"] for x in recording.flows)
    assert {x["mode"] for x in flows} == {mode}
    assert all("status" in x for x in flows), flows  # each replayed request was answered
    assert found(flows) == found(recording.flows)
    for line in flows:  # each action once, applied as the replaying proxy's mode says
        targets = [(a["action"], a["target"]) for a in line["actions"]]
        assert len(targets) == len(set(targets)), line["actions"]
        assert {a["applied"] for a in line["actions"]} <= {mode == "enforce"}
    reached = len(market.recorder.find(BEACON, recording.beacon)) - before
    assert reached == (0 if mode == "enforce" else 1)  # blocked when the replay enforces


def test_mitmdump_loads_the_saved_file_with_the_addons(recording: Recording) -> None:
    """Loading a saved file (`mitmdump -r`, mitmweb's open) shows past traffic: the addons load
    without an error and write no new flow line for it (`shopguard scan` reads such files)."""
    script = subprocess.run(
        [SHOPGUARD, "addon-path"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    log = recording.home / f"read-{recording.mode}.jsonl"
    result = subprocess.run(
        [
            MITMDUMP,
            "-n",
            "-r",
            str(recording.file),
            "-s",
            script,
            "--set",
            f"confdir={recording.home / 'mitmdump'}",
            "--set",
            f"shopguard_log={log}",
            "--set",
            f"shopguard_profile={recording.profile}",
            "--set",
            f"shopguard_mode={recording.mode}",
        ],
        env=isolated_env(recording.home),
        capture_output=True,
        text=True,
        timeout=EXIT_WAIT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert validate_file(log) > 0
    lines = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()]
    no_errors(lines, result.stdout, result.stderr)
    assert {x["event"] for x in lines} >= {"policy_loaded", "profile_loaded"}
    assert [x for x in lines if x["event"] == "flow"] == []
