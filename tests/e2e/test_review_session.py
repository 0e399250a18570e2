"""The review loop a user follows, in headless Chromium: shop in observe mode, read what
`shopguard report` says was sent, let `shopguard policy suggest --apply` write the rules, check
them, and shop again in enforce mode — what the first report listed as unhandled is stopped,
and nothing else is: the shop's own page and order call still go through.

The signed-in shop page sends what real ones do: Meta's pixel with the SHA-256 of the buyer's
e-mail (`ud[em]`), and the shop's own visitor-ID cookie echoed to a tracker host of the shop's
that the shipped policy lets through. One page load sends each twice (on the page view, and
once the order went through), which `policy suggest` takes for a habit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.support.browser import chromium_path, dump_dom
from tests.support.certs import UpstreamPKI, spki_hash
from tests.support.market import (
    API,
    BEACON,
    BUYER_EMAIL,
    LOGIN,
    PIXEL,
    SHOP,
    TRACKER,
    VISITOR_COOKIE,
    VISITOR_PARAM,
    FakeMarket,
    Received,
)
from tests.support.proxy import SHOPGUARD, Proxy, isolated_env, start_proxy

pytestmark = pytest.mark.e2e
chromium_path()  # (skips this module where Chromium is missing, except in CI)

EMAIL_AT = "query:ud%5Bem%5D"  # the pixel's advanced-matching parameter, as a location
VISITOR_AT = f"query:{VISITOR_PARAM}"


@dataclass
class Session:
    """One `shopguard run` and one signed-in page load through it."""

    dom: str
    flows: list[dict[str, Any]]  # the session's flow lines
    arrived: list[Received]  # what reached the fake market


@dataclass
class Loop:
    home: Path
    observe: Session
    observed: dict[str, Any]  # `report --format json` after the observe session
    suggested: subprocess.CompletedProcess[str]  # `policy suggest --apply`
    checked: subprocess.CompletedProcess[str]  # `policy check`
    tested: subprocess.CompletedProcess[str]  # `policy test`
    enforce: Session
    enforced: dict[str, Any]  # `report --session last --format json` after it
    page: Path  # `report --session last --format html -o …`

    @property
    def sites_dir(self) -> Path:
        return self.home / "config" / "shopguard" / "sites"


def shopguard(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """The `shopguard` command as the user runs it, with their config and state directories."""
    return subprocess.run(
        [SHOPGUARD, *argv],
        env=isolated_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def report(home: Path, *argv: str) -> dict[str, Any]:
    done = shopguard(home, "report", *argv, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def this_session(proxy: Proxy) -> list[dict[str, Any]]:
    """The flow lines since the proxy's start (both sessions write one log)."""
    lines = proxy.lines()
    start = max(i for i, x in enumerate(lines) if x["event"] == "proxy_started")
    return [x for x in lines[start:] if x["event"] == "flow"]


def page_done(flows: list[dict[str, Any]]) -> bool:
    """The page's last requests are logged: two pixels and two beacons (the second of each
    once the order came back)."""
    pixels = [x for x in flows if x["host"] == PIXEL and x["path"].startswith("/tr/")]
    beacons = [x for x in flows if x["host"] == TRACKER]
    return len(pixels) >= 2 and len(beacons) >= 2


def shop(home: Path, mode: str, market: FakeMarket, pki: UpstreamPKI) -> Session:
    """A session in `mode`, in a new browser: the buyer signs in, the shop's page loads."""
    proxy = start_proxy(
        home,
        "--mode",
        mode,
        "--profile",
        str(home / "profile.yaml"),
        routes=market.routes,
        upstream_ca=pki.ca_pem,
    )
    browser = home / f"browser-{mode}"
    try:
        shopguard_ca = x509.load_pem_x509_certificate(proxy.ca.read_bytes())
        trusted = ",".join([spki_hash(shopguard_ca), *pki.spki_hashes])
        market.recorder.clear()  # (the market serves the whole test session)
        dom = dump_dom(
            f"https://{SHOP}{LOGIN}",  # signs in, then lands on the shop's home page
            browser,
            f"--proxy-server=http://127.0.0.1:{proxy.port}",
            f"--ignore-certificate-errors-spki-list={trusted}",
        )
        for _ in range(200):  # bounded: 10 s
            if page_done(this_session(proxy)):
                break
            time.sleep(0.05)
        arrived = list(market.recorder.requests)
        flows = this_session(proxy)
    finally:
        proxy.stop()
        shutil.rmtree(
            browser, ignore_errors=True
        )  # (its cache holds the page, hashed e-mail and all)
    return Session(dom, flows, arrived)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory, market: FakeMarket, pki: UpstreamPKI) -> Loop:
    home = tmp_path_factory.mktemp("review")
    profile = home / "profile.yaml"
    profile.write_text(f'email: ["{BUYER_EMAIL}"]\n', encoding="utf-8")
    profile.chmod(0o600)
    log = str(home / "flows.jsonl")
    observe = shop(home, "observe", market, pki)
    observed = report(home, log)
    suggested = shopguard(home, "policy", "suggest", log, "--apply")
    checked = shopguard(home, "policy", "check")
    tested = shopguard(home, "policy", "test")
    enforce = shop(home, "enforce", market, pki)
    enforced = report(home, log, "--session", "last")
    page = home / "report.html"
    done = shopguard(home, "report", log, "--session", "last", "--format", "html", "-o", str(page))
    assert done.returncode == 0, done.stderr
    return Loop(home, observe, observed, suggested, checked, tested, enforce, enforced, page)


def sent(data: dict[str, Any]) -> dict[tuple[str, str], tuple[int, int]]:
    """(category, host) -> (sent, stopped) of the taobao visit (its ad pixels included)."""
    return {
        (s["category"], s["host"]): (s["sent"], s["stopped"])
        for s in data["sites"]["taobao"]["sent"]
    }


def test_observe_report_lists_the_pixels_hashed_email_and_the_echoed_visitor_id(
    loop: Loop,
) -> None:
    assert "order sent" in loop.observe.dom  # the page ran to its end
    assert {x["mode"] for x in loop.observe.flows} == {"observe"}
    data = loop.observed
    assert list(data["sites"]) == ["taobao"]  # the pixel is reported with the shop that fired it
    # per site, category and host: everything left in observe mode
    rows = sent(data)
    assert rows[("email", PIXEL)] == (2, 0)
    assert rows[("tracking_id", TRACKER)] == (2, 0)
    assert rows[("phone", API)] == (2, 0)  # the order's recipient, to the shop (query and form)
    (mail,) = [v for v in data["sites"]["taobao"]["your_values"] if v["category"] == "email"]
    assert mail["preview"] == "w***@example.com"
    assert [(h["host"], h["count"], h["how"]) for h in mail["hosts"]] == [(PIXEL, 2, ["sha256"])]
    # the visitor ID came from the shop's own cookie
    assert {(x["from"], x["to"]) for x in data["sites"]["taobao"]["linked"]} >= {
        (f"set-cookie:{VISITOR_COOKIE}@{SHOP}", TRACKER)
    }
    # what reached third parties with no rule acting on it: exactly these two, most serious
    # first, each with the rule (and the file) that would stop it
    third = [r for r in data["unhandled"] if r["third_party"]]
    assert [(r["category"], r["host"], r["location"]) for r in third] == [
        ("email", PIXEL, EMAIL_AT),
        ("tracking_id", TRACKER, VISITOR_AT),
    ]
    email, visitor = third
    assert (email["site"], email["count"], email["sent"], email["stopped"]) == ("taobao", 2, 2, 0)
    assert email["how"] == ["sha256"] and email["rule_site"] == "third-party-pixels"
    assert email["rule_to_add"] == f'fields: {{email: {{action: strip, hosts: ["{PIXEL}"]}}}}'
    assert (visitor["site"], visitor["count"], visitor["sent"]) == ("taobao", 2, 2)
    assert visitor["rule_site"] == "taobao"
    assert visitor["rule_to_add"] == f'trackers: {{strip_params: ["{VISITOR_PARAM}"]}}'


def test_suggest_writes_the_rules_into_the_users_files_and_they_pass(loop: Loop) -> None:
    assert loop.suggested.returncode == 0, loop.suggested.stderr
    pixels = loop.sites_dir / "third-party-pixels.yaml"
    taobao = loop.sites_dir / "taobao.yaml"
    assert f"{pixels}: 1 rules added" in loop.suggested.stdout
    assert f"{taobao}: 1 rules added" in loop.suggested.stdout
    assert sorted(p.name for p in loop.sites_dir.iterdir()) == [taobao.name, pixels.name]
    written = pixels.read_text(encoding="utf-8")
    assert written.startswith("extends: default\n") and f'- "{PIXEL}"' in written
    assert "email:" in written and "action: strip" in written
    written = taobao.read_text(encoding="utf-8")
    assert written.startswith("extends: default\n")
    assert f'- "{VISITOR_PARAM}"' in written and "strip_params:" in written
    # nothing the shop needs: not its own order data, not its own cookie (seen once)
    assert "fields:" not in written and VISITOR_COOKIE not in written
    assert loop.checked.returncode == 0, loop.checked.stdout + loop.checked.stderr
    assert str(pixels) in loop.checked.stdout and str(taobao) in loop.checked.stdout
    assert loop.tested.returncode == 0, loop.tested.stdout + loop.tested.stderr
    assert " examples pass" in loop.tested.stdout


def test_enforce_stops_exactly_those_leaks_and_the_shop_still_works(loop: Loop) -> None:
    session = loop.enforce
    assert "order sent" in session.dom  # the order call came back from the shop, and succeeded
    assert {x["mode"] for x in session.flows} == {"enforce"}
    # the shop's own requests went through untouched
    own = [x for x in session.flows if not x["third_party"]]
    assert {x["host"] for x in own} >= {SHOP, API}
    assert all(x["status"] in (200, 302) and not x["actions"] for x in own), own
    (order,) = [r for r in session.arrived if r.host == API]
    assert b"receiverMobile" in order.body  # the recipient still reaches the shop
    # what actually left: the pixel and the beacon, without the values
    pixels = [r for r in session.arrived if r.host == PIXEL and r.path.startswith("/tr/")]
    beacons = [r for r in session.arrived if r.host == TRACKER]
    assert len(pixels) == 2 and len(beacons) == 2
    # (counted: a failure must not print what the pixel carried)
    assert sum("ud[em]" in r.path or "ud%5Bem%5D" in r.path for r in pixels) == 0
    assert sum(f"{VISITOR_PARAM}=" in r.path for r in beacons) == 0
    # the report of that session: those leaks stopped, nothing new unhandled
    data = loop.enforced
    rows = sent(data)
    assert rows[("email", PIXEL)] == (0, 2)
    assert rows[("tracking_id", TRACKER)] == (0, 2)
    assert [r for r in data["unhandled"] if r["third_party"]] == []
    # and nothing else newly stopped: every stop but those two is one the shipped policy
    # already reported in observe mode
    stopped = {key for key, (_, count) in rows.items() if count}
    assert stopped == {("email", PIXEL), ("tracking_id", TRACKER), ("tracking_id", BEACON)}
    assert rows[("phone", API)] == (2, 0)
    before = {
        (a["action"], a["target"], a["rule"]) for a in loop.observed["sites"]["taobao"]["actions"]
    }
    actions = loop.enforced["sites"]["taobao"]["actions"]
    assert all(a["applied"] for a in actions)
    new = {
        (a["action"], a["target"])
        for a in actions
        if (a["action"], a["target"], a["rule"]) not in before
    }
    assert new == {("strip", EMAIL_AT), ("strip", VISITOR_AT)}
    for action in actions:
        if (action["action"], action["target"]) in new:
            assert action["rule"].startswith(str(loop.sites_dir)), action


def test_the_html_report_of_the_enforce_session_names_the_stopped_leaks(loop: Loop) -> None:
    assert os.stat(loop.page).st_mode & 0o777 == 0o600
    text = loop.page.read_text(encoding="utf-8")
    for host in (PIXEL, TRACKER):  # kind, host, who, sent 0, stopped 2
        assert (
            f'<td>{host}</td><td>a third party</td><td class="n">0</td><td class="n">2</td>' in text
        ), host
    for target in (EMAIL_AT, VISITOR_AT):  # what the policy did
        assert f"<td>strip</td><td>{target}</td>" in text, target
