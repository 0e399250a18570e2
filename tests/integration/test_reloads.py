"""Edits while a real `shopguard run` runs: a site file or the profile edited, corrupted and
deleted. A good edit takes effect, a broken one keeps the last good one and says so."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.certs import UpstreamPKI
from tests.support.market import API, FakeMarket
from tests.support.proxy import Proxy, fetch, start_proxy

pytestmark = pytest.mark.integration

NAME = "王小明"  # in the profile: only the profile makes it a finding
RULE = 'extends: default\ntrackers:\n  block: ["h5api.m.taobao.com/blocked*"]\n'


@pytest.fixture(scope="module")
def proxy(
    tmp_path_factory: pytest.TempPathFactory, market: FakeMarket, pki: UpstreamPKI
) -> Iterator[Proxy]:
    home = tmp_path_factory.mktemp("reloads")
    (home / "config" / "shopguard" / "sites").mkdir(parents=True)
    running = start_proxy(home, "--mode", "enforce", routes=market.routes, upstream_ca=pki.ca_pem)
    yield running
    running.stop()


def _config(proxy: Proxy) -> Path:
    return proxy.log.parent / "config" / "shopguard"


def _save(path: Path, text: str) -> None:
    """Written as an editor does (a new file in place of the old), with a new time stamp."""
    part = path.with_name(path.name + ".part")
    part.write_text(text, encoding="utf-8")
    part.chmod(0o600)
    os.replace(part, path)
    later = time.time() + len(text) % 7 + 1  # (a stamp no earlier save had)
    os.utime(path, (later, later))


def _after(proxy: Proxy, event: str, count: int) -> dict[str, Any]:
    """The `count`-th line of `event`, waiting for it (the watcher looks once a second)."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = proxy.lines(event)
        if len(found) >= count:
            return found[count - 1]
        time.sleep(0.1)
    raise AssertionError(f"no {count}th {event} line: {found}")


def _blocked(proxy: Proxy, n: int) -> bool:
    reply = fetch(proxy.port, f"https://{API}/blocked?n={n}", cafile=proxy.ca)
    return reply.status in (204, 403)


def test_a_site_file_edited_corrupted_and_deleted_while_running(proxy: Proxy) -> None:
    site = _config(proxy) / "sites" / "taobao.yaml"
    loaded = len(proxy.lines("policy_loaded"))
    _save(site, RULE)
    _after(proxy, "policy_loaded", loaded + 1)
    assert _blocked(proxy, 1)  # the edit is in force
    _save(site, RULE + "trackers: [broken\n")
    rejected = _after(proxy, "policy_rejected", 1)
    assert any(f"{site}:5: YAML syntax error" in e for e in rejected["errors"])  # file, line
    assert _blocked(proxy, 2)  # the last good policy stays
    site.unlink()  # deleting your file goes back to the shipped one
    _after(proxy, "policy_loaded", loaded + 2)
    assert not _blocked(proxy, 3)


def test_the_profile_created_deleted_and_saved_empty_while_running(proxy: Proxy) -> None:
    profile = _config(proxy) / "profile.yaml"
    assert proxy.lines("profile_missing")  # none at start: said so

    def named(n: int) -> bool:
        fetch(proxy.port, f"https://{API}/s{n}?q={quote(NAME)}", cafile=proxy.ca)
        (line,) = proxy.wait_for(lambda x: x["event"] == "flow" and x["path"] == f"/s{n}?q=***")
        return "name" in {f["category"] for f in line["findings"]}

    assert not named(1)
    _save(profile, f'name: ["{NAME}"]\n')
    _after(proxy, "profile_loaded", 1)
    assert named(2)
    profile.unlink()  # gone for a moment (a sync tool replacing it): the last good one stays
    rejected = _after(proxy, "profile_rejected", 1)
    assert "gone" in rejected["errors"][0]
    assert named(3)
    _save(profile, "")  # saved empty: cleared
    assert _after(proxy, "profile_loaded", 2)["values"] == 0
    assert not named(4)
    assert NAME not in proxy.log.read_text(encoding="utf-8")
