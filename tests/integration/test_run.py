"""A real `shopguard run` process between a client and the fake marketplace, over HTTP and HTTPS."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import UpstreamPKI
from tests.support.market import API, CDN, LOOKALIKE, PIXEL, SHOP, FakeMarket
from tests.support.proxy import SHOPGUARD, Proxy, fetch, isolated_env, start_proxy
from tests.support.sockets import listening

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def proxy(module_home: Path, market: FakeMarket, pki: UpstreamPKI) -> Iterator[Proxy]:
    profile = module_home / "profile.yaml"
    profile.write_text('phone: ["+86 138 0013 8000"]\n', encoding="utf-8")
    profile.chmod(0o600)
    running = start_proxy(
        module_home, "--profile", str(profile), routes=market.routes, upstream_ca=pki.ca_pem
    )
    yield running
    running.stop()


def flows_for(proxy: Proxy, host: str) -> list[dict[str, object]]:
    return proxy.wait_for(lambda x: x["event"] == "flow" and x["host"] == host)


def test_banner_names_address_sites_ca_and_log(proxy: Proxy) -> None:
    text = proxy.output.text
    assert f"listening on http://127.0.0.1:{proxy.port}" in text
    assert "site taobao" in text and "observe" in text
    assert "mitmproxy-ca-cert.pem" in text
    assert f"log: {proxy.log}" in text
    started = proxy.wait_for(lambda x: x["event"] == "proxy_started")
    assert started and started[0]["listen"] == [f"127.0.0.1:{proxy.port}"]
    assert proxy.lines("policy_loaded")


def test_banner_names_the_profile_and_exactly_which_hosts_are_decrypted(proxy: Proxy) -> None:
    text = proxy.output.text
    assert f"  profile: {proxy.log.parent / 'profile.yaml'}\n" in text
    assert "only (all others pass encrypted)" in text
    taobao = re.search(r"^  site taobao +observe +(.*)$", text, re.M)
    assert taobao and taobao.group(1).split()[:3] == ["*.taobao.com", "*.tmall.com", "*.tmall.hk"]
    pixels = " ".join(text.split("third-party-pixels:", 1)[1].split())
    assert "decrypted for every website" in pixels and "Referer" in pixels
    assert "sites/third-party-pixels.yaml with `enabled: false`" in pixels
    assert "connect.facebook.net" in text


def test_the_proxy_listens_on_loopback_only(proxy: Proxy) -> None:
    sockets = listening(proxy.process.pid)
    assert [(s.protocol, s.port) for s in sockets if s.protocol.startswith("tcp")] == [
        ("tcp", proxy.port)
    ]
    assert all(s.address.is_loopback for s in sockets), sockets


def test_a_second_run_on_the_busy_port_says_so_and_writes_nothing(
    proxy: Proxy, tmp_path: Path
) -> None:
    before = proxy.log.read_bytes()
    result = run_cli(tmp_path, "run", "--listen-port", str(proxy.port), "--log", str(proxy.log))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{proxy.port}: the port is in use" in result.stderr
    assert f"--listen-port {proxy.port + 1}, or --listen-port 0" in result.stderr
    assert "--mode" not in result.stderr + result.stdout  # (mitmproxy's own option)
    assert "listening on" not in result.stdout
    assert proxy.log.read_bytes() == before  # not a line, not even policy_loaded
    assert proxy.process.poll() is None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(["--set", "listen_host=0.0.0.0"], id="--set listen_host"),
        pytest.param(["--set", "mode=regular@0.0.0.0:{port}"], id="regular@any"),
        pytest.param(["--set", "mode=socks5@0.0.0.0:{port}"], id="socks5@any"),
        pytest.param(
            ["--listen-host", "0.0.0.0", "--allow-remote", "--set", "proxyauth=any"],
            id="proxyauth=any",
        ),
    ],
)
def test_a_refused_configuration_never_listens(tmp_path: Path, extra: list[str]) -> None:
    port = free_port()
    args = [a.format(port=port) for a in extra]
    process = subprocess.Popen(
        [SHOPGUARD, "run", "--listen-port", str(port), *args],
        env=isolated_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    listened = False
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline and not listened:
        listened = accepts(port)
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
    stdout, stderr = process.communicate(timeout=10)
    assert not listened, f"it listened on port {port}: {stdout}"
    assert process.returncode == 2
    assert stderr.startswith("shopguard: refusing to listen on ")
    assert not (tmp_path / "state" / "shopguard" / "flows.jsonl").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_clean_stop_ends_the_log_with_proxy_stopped(tmp_path: Path, sig: signal.Signals) -> None:
    running = start_proxy(tmp_path)
    running.process.send_signal(sig)
    assert running.process.wait(timeout=20) == 0
    running.stop()
    *_, started, stopped = running.lines()
    assert started["event"] == "proxy_started"
    assert stopped["event"] == "proxy_stopped" and stopped["reason"] == sig.name
    assert stopped["uptime_s"] >= 0
    # and without a profile the banner says so, and where one goes
    default = tmp_path / "config" / "shopguard" / "profile.yaml"
    banner = " ".join(running.output.text.split())
    assert "profile: none" in banner
    assert f"~/{default.relative_to(tmp_path)}" in banner


def test_in_scope_https_is_intercepted_and_logged(proxy: Proxy, market: FakeMarket) -> None:
    reply = fetch(proxy.port, f"https://{SHOP}/?spm=a21bo.secret", cafile=proxy.ca)
    assert reply.status == 200
    assert b"fake shop" in reply.body
    assert reply.issuer and reply.issuer.startswith("shopguard CA ")  # shopguard's certificate
    assert market.recorder.find(SHOP, "/?spm=")  # and the request reached the upstream
    (line,) = flows_for(proxy, SHOP)
    assert line["schema"] == 1
    assert line["site"] == "taobao"
    assert line["method"] == "GET"
    assert line["path"] == "/?spm=***"
    assert line["status"] == 200
    assert line["third_party"] is False
    assert line["mode"] == "observe"
    assert line["findings"] == []
    (would,) = line["actions"]  # observe mode: the shipped policy's strip is only reported
    assert (would["action"], would["target"], would["applied"]) == ("strip", "query:spm", False)
    assert "sites/taobao.yaml:" in would["rule"]
    assert isinstance(line["duration_ms"], float)


def test_in_scope_api_post_over_https(proxy: Proxy, market: FakeMarket) -> None:
    reply = fetch(
        proxy.port,
        f"https://{API}/h5/mtop.trade.order.create/1.0/?appKey=1&data=%7B%7D",
        cafile=proxy.ca,
        method="POST",
        headers={"content-type": "application/x-www-form-urlencoded", "origin": f"https://{SHOP}"},
        body=b"data=%7B%22receiverMobile%22%3A%2213800138000%22%7D",
    )
    assert reply.status == 200
    (received,) = market.recorder.find(API, "/h5/mtop.trade.order.create/1.0/?appKey=1&")
    assert received.body.startswith(b"data=")
    (line,) = flows_for(proxy, API)
    assert line["method"] == "POST" and line["path"].endswith("?appKey=***&data=***")
    assert line["inspection"] == "full"
    (phone,) = line["findings"]
    assert (phone["category"], phone["location"], phone["detector"]) == (
        "phone",
        "body.form:data.$.receiverMobile",
        "profile",
    )
    assert phone["preview"] == "138****8000" and len(phone["fingerprint"]) == 20
    assert "13800138000" not in proxy.log.read_text()


def test_shared_host_belongs_to_the_site_of_the_referer(proxy: Proxy) -> None:
    reply = fetch(
        proxy.port,
        f"https://{CDN}/alilog/mlog/aplus_v2.js",
        cafile=proxy.ca,
        headers={"referer": f"https://{SHOP}/"},
    )
    assert reply.status == 200
    (line,) = flows_for(proxy, CDN)
    assert line["site"] == "taobao"
    assert line["third_party"] is True


def test_out_of_scope_https_is_not_intercepted_nor_logged(
    proxy: Proxy, market: FakeMarket, pki: UpstreamPKI
) -> None:
    reply = fetch(proxy.port, f"https://{LOOKALIKE}/tr?id=1", cafile=pki.ca_pem)
    assert reply.status == 200
    assert reply.issuer == "shopguard test upstream CA"  # the upstream's own certificate
    assert market.recorder.find(LOOKALIKE, "/tr?id=1")
    proxy.wait_for(lambda x: x["event"] == "flow" and x["host"] == SHOP)
    assert LOOKALIKE not in {x.get("host") for x in proxy.lines()}


def test_an_ad_pixel_not_fired_by_a_marketplace_page_is_relayed_and_not_logged(
    proxy: Proxy, market: FakeMarket
) -> None:
    # pixel hosts are decrypted (the Referer is only visible inside TLS), but only a request
    # from a marketplace page is logged and acted on
    reply = fetch(
        proxy.port,
        f"https://{PIXEL}/tr?id=elsewhere",
        cafile=proxy.ca,
        headers={"referer": "https://news.example/"},
    )
    assert reply.status == 200 and reply.issuer and reply.issuer.startswith("shopguard CA ")
    assert market.recorder.find(PIXEL, "/tr?id=elsewhere")
    fetch(
        proxy.port,
        f"https://{PIXEL}/tr?id=fired",
        cafile=proxy.ca,
        headers={"referer": f"https://{SHOP}/"},
    )
    (line,) = proxy.wait_for(lambda x: x["event"] == "flow" and x["host"] == PIXEL)
    assert line["site"] == "third-party-pixels" and line["via"] == "taobao"
    assert line["path"] == "/tr?id=***"


def test_plain_http_in_scope_is_logged_and_out_of_scope_is_not(
    proxy: Proxy, market: FakeMarket
) -> None:
    reply = fetch(proxy.port, f"http://{SHOP}/?q=phone")
    assert reply.status == 200
    assert [r for r in market.recorder.find(SHOP, "/?q=phone") if r.scheme == "http"]
    reply = fetch(proxy.port, f"http://{LOOKALIKE}/plain?id=2")
    assert reply.status == 200
    assert market.recorder.find(LOOKALIKE, "/plain?id=2")
    lines = flows_for(proxy, SHOP)
    assert any(x["path"] == "/?q=***" for x in lines)
    assert not [x for x in proxy.lines() if x.get("host") == LOOKALIKE]


def test_client_that_does_not_trust_the_ca_is_reported(proxy: Proxy, pki: UpstreamPKI) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        fetch(proxy.port, f"https://{SHOP}/untrusted", cafile=pki.ca_pem)
    (line,) = proxy.wait_for(lambda x: x["event"] == "tls_failed")
    assert line["host"] == SHOP
    assert line["site"] == "taobao"
    assert "does not trust shopguard's CA" in line["hint"]


def test_log_and_directory_are_private(proxy: Proxy) -> None:
    assert os.stat(proxy.log).st_mode & 0o777 == 0o600
    state = proxy.ca.parent
    assert os.stat(state).st_mode & 0o777 == 0o700


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_directories_and_keys_that_exist_are_made_private_at_start(tmp_path: Path) -> None:
    first = start_proxy(tmp_path)
    first.stop()
    state = tmp_path / "state" / "shopguard"
    confdir = state / "mitmproxy"
    wireguard = confdir / "wireguard.conf"  # (as mitmproxy writes it: with the umask's mode)
    wireguard.write_text('{"server_key": "x", "client_key": "y"}')
    keys = [*confdir.glob("*-ca.pem"), *confdir.glob("*-ca.p12"), wireguard, state / "secret.key"]
    assert len(keys) == 4
    for path in keys:
        path.chmod(0o644)
    for directory in (state, confdir):
        directory.chmod(0o755)
    logs = tmp_path / "logs"  # the user's own directory, which others can open
    logs.mkdir(mode=0o755)
    logs.chmod(0o755)
    certificate = confdir / "mitmproxy-ca-cert.pem"
    public = mode_of(certificate)

    again = start_proxy(tmp_path, log=logs / "flows.jsonl")
    again.stop()
    assert {p.name: mode_of(p) for p in keys} == {p.name: 0o600 for p in keys}
    assert (mode_of(state), mode_of(confdir)) == (0o700, 0o700)
    assert mode_of(certificate) == public  # the public certificate: as it was
    assert mode_of(logs) == 0o755  # theirs: left alone, with a warning
    warning = " ".join(again.stderr_path.read_text().split())
    assert f"the log is in {logs}, a directory shopguard did not create" in warning
    assert f"chmod 700 {logs}" in warning


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SHOPGUARD, *args],
        env=isolated_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_unwritable_log_at_start_exits_2(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "run", "--listen-port", "0", "--log", "/dev/full")
    assert result.returncode == 2
    assert "cannot write the shopguard log /dev/full" in result.stderr


def test_remote_listen_without_auth_exits_2(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "run", "--listen-host", "0.0.0.0", "--listen-port", "0")
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0" in result.stderr


def test_broken_config_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    sites = tmp_path / "cfg" / "sites"
    sites.mkdir(parents=True)
    (sites / "temu.yaml").write_text("site: temu\nhosts:\n  - '*temu.com'\n")
    result = run_cli(tmp_path, "run", "--listen-port", "0", "--config", str(tmp_path / "cfg"))
    assert result.returncode == 2
    assert "sites/temu.yaml:3: hosts[0]: invalid host glob '*temu.com'" in result.stderr


def test_web_flag_serves_mitmweb(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        web_port = probe.getsockname()[1]
    running = start_proxy(
        tmp_path, "--web", "--set", "web_open_browser=false", "--set", f"web_port={web_port}"
    )
    try:
        match = re.search(rf"(http://127\.0\.0\.1:{web_port}/\?token=\w+)", running.output.text)
        assert match, running.output.text
        with urllib.request.urlopen(match.group(1), timeout=10) as page:
            assert page.status == 200
            assert b"mitmproxy" in page.read().lower()
    finally:
        running.stop()
