"""The `shopguard` command line: policy check, pac, addon-path, ca and run's safety checks."""

from __future__ import annotations

import argparse
import json
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from shopguard.cli import run as run_module
from shopguard.cli.main import main

SHIPPED_SITES = [
    "alibaba",
    "aliexpress",
    "jd",
    "lazada",
    "pinduoduo",
    "shein",
    "taobao",
    "temu",
    "third-party-pixels",
]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Nothing touches the real home: config and state go to tmp directories."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def user(tmp_path: Path) -> Path:
    directory = tmp_path / "user"
    (directory / "sites").mkdir(parents=True)
    return directory


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[argparse.Namespace]:
    """Replaces the proxy itself: records that `run` would have started it."""
    calls: list[argparse.Namespace] = []

    async def fake_serve(args: argparse.Namespace) -> int:
        calls.append(args)
        return 0

    monkeypatch.setattr(run_module, "serve", fake_serve)
    return calls


# --- policy check ---------------------------------------------------------------------------


def test_policy_check_lists_every_site(user: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (user / "shopguard.yaml").write_text("mode: enforce\n")
    (user / "sites" / "jd.yaml").write_text("enabled: false\n")
    (user / "sites" / "bazaar.yaml").write_text('hosts: ["*.bazaar.example"]\nmode: observe\n')
    assert main(["policy", "check", "--config", str(user)]) == 0
    out = capsys.readouterr().out.splitlines()
    site_lines = {line.split()[0]: line.split()[1] for line in out[:-1]}
    assert site_lines == {
        **{name: "enforce" for name in SHIPPED_SITES},
        "jd": "disabled",
        "bazaar": "observe",
    }
    assert len(out) == len(SHIPPED_SITES) + 2
    assert out[-1].startswith(f"ok: {len(SHIPPED_SITES)} sites enabled")


def test_policy_check_warns_about_hosts_listed_by_several_sites(
    user: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "check", "--config", str(user)]) == 0
    err = capsys.readouterr().err
    (warning,) = [line for line in err.splitlines() if "*.alicdn.com" in line]
    assert warning.startswith("warning: *.alicdn.com is listed by ")
    for name in ("taobao", "aliexpress", "alibaba"):
        assert name in warning


def test_policy_check_without_shared_hosts_warns_about_nothing(
    user: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in set(SHIPPED_SITES) - {"taobao", "jd"}:
        (user / "sites" / f"{name}.yaml").write_text("enabled: false\n")
    assert main(["policy", "check", "--config", str(user)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_policy_check_reports_errors_with_file_and_line(
    user: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (user / "sites" / "bazaar.yaml").write_text(
        'site: bazaar\nhosts: ["*.bazaar.example"]\nmode: fast\ncolour: blue\n'
    )
    (user / "shopguard.yaml").write_text("log:\n  keep: ten\n")
    assert main(["policy", "check", "--config", str(user)]) == 2
    captured = capsys.readouterr()
    assert "ok:" not in captured.out
    assert "shopguard.yaml:2: log.keep: expected a whole number, got 'ten'" in captured.err
    assert "sites/bazaar.yaml:3: mode: expected one of observe, enforce, got 'fast'" in (
        captured.err
    )
    assert "sites/bazaar.yaml:4: colour: unknown key" in captured.err
    assert "3 configuration errors" in captured.err


def test_policy_check_of_a_missing_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "check", "--config", str(tmp_path / "nope")]) == 2
    assert "config directory not found" in capsys.readouterr().err


def test_policy_check_reads_the_platform_config_directory_by_default(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sites = home / "xdg-config" / "shopguard" / "sites"
    sites.mkdir(parents=True)
    (sites / "temu.yaml").write_text("hosts: [5]\n")
    assert main(["policy", "check"]) == 2
    assert "temu.yaml:1: hosts[0]: expected a host glob as text" in capsys.readouterr().err


# --- pac ------------------------------------------------------------------------------------


def pac_lists(text: str) -> tuple[list[str], list[str]]:
    exact = re.search(r"var exact = (\[.*?\]);", text)
    domains = re.search(r"var domains = (\[.*?\]);", text)
    assert exact and domains, text
    return json.loads(exact.group(1)), json.loads(domains.group(1))


def pac_decision(text: str, host: str) -> str:
    """FindProxyForURL as the generated JavaScript computes it."""
    exact, domains = pac_lists(text)
    proxy = re.search(r'return "(PROXY [^"]+)"', text)
    assert proxy and 'return "DIRECT"' in text
    host = host.lower()
    if host == "mitm.it" or host in exact:
        return proxy.group(1)
    if any(host == d or host.endswith("." + d) for d in domains):
        return proxy.group(1)
    return "DIRECT"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("www.taobao.com", "PROXY 127.0.0.1:8123"),
        ("taobao.com", "PROXY 127.0.0.1:8123"),
        ("h5api.m.taobao.com", "PROXY 127.0.0.1:8123"),
        ("WWW.TAOBAO.COM", "PROXY 127.0.0.1:8123"),
        ("ynuf.aliapp.org", "PROXY 127.0.0.1:8123"),
        ("www.lazada.com.my", "PROXY 127.0.0.1:8123"),
        ("mitm.it", "PROXY 127.0.0.1:8123"),
        ("taobao.com.evil.example", "DIRECT"),
        ("eviltaobao.com", "DIRECT"),
        ("x.ynuf.aliapp.org", "DIRECT"),
        ("example.org", "DIRECT"),
        ("127.0.0.1", "DIRECT"),
    ],
)
def test_pac_sends_only_configured_hosts_through_the_proxy(
    user: Path, capsys: pytest.CaptureFixture[str], host: str, expected: str
) -> None:
    assert main(["pac", "--config", str(user), "--listen-port", "8123"]) == 0
    text = capsys.readouterr().out
    assert "function FindProxyForURL(url, host)" in text
    assert "host.toLowerCase()" in text
    assert pac_decision(text, host) == expected


def test_pac_follows_the_user_configuration(user: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (user / "sites" / "taobao.yaml").write_text("enabled: false\n")
    (user / "sites" / "bazaar.yaml").write_text('hosts: ["shop.bazaar.example"]\n')
    args = ["pac", "--config", str(user), "--listen-host", "192.0.2.7", "--listen-port", "3128"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert pac_decision(text, "www.taobao.com") == "DIRECT"
    assert pac_decision(text, "shop.bazaar.example") == "PROXY 192.0.2.7:3128"
    assert pac_decision(text, "www.bazaar.example") == "DIRECT"


def test_pac_of_a_broken_configuration_is_a_usage_error(
    user: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (user / "sites" / "bazaar.yaml").write_text("hosts: ['*bazaar.example']\n")
    assert main(["pac", "--config", str(user)]) == 2
    captured = capsys.readouterr()
    assert "FindProxyForURL" not in captured.out
    assert "sites/bazaar.yaml:1: hosts[0]: invalid host glob" in captured.err


# --- addon-path -----------------------------------------------------------------------------


def test_addon_path_prints_the_entry_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["addon-path"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.is_absolute() and path.is_file()
    code = path.read_text(encoding="utf-8")
    assert re.search(r"^from shopguard\.chain import|^import shopguard\.chain", code, re.M)
    assert re.search(r"^addons = ", code, re.M)


# --- ca -------------------------------------------------------------------------------------


def test_ca_prints_path_and_fingerprint_of_a_stable_private_ca(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ca"]) == 0
    out = capsys.readouterr().out
    state = home / "xdg-state" / "shopguard"
    pem_line = re.search(r"^CA certificate:\s+(\S+)$", out, re.M)
    assert pem_line
    pem = Path(pem_line.group(1))
    assert pem.is_file() and pem.is_relative_to(state)
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    fingerprint = re.search(r"^SHA-256 fingerprint:\s+([0-9A-F:]+)$", out, re.M)
    assert fingerprint
    assert fingerprint.group(1) == cert.fingerprint(hashes.SHA256()).hex(":").upper()
    for private in (state, pem.parent):
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
    for key in pem.parent.glob("*ca.pem"):  # the CA's private key
        assert stat.S_IMODE(key.stat().st_mode) & 0o077 == 0
    assert not (home / "home" / ".mitmproxy").exists()

    assert main(["ca", "--path"]) == 0
    assert capsys.readouterr().out.strip() == str(pem)
    assert x509.load_pem_x509_certificate(pem.read_bytes()) == cert  # not regenerated


# --- run: refuses to expose the proxy ------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(["--listen-host", "0.0.0.0"], id="any address"),
        pytest.param(["--listen-host", "::"], id="any v6 address"),
        pytest.param(["--listen-host", "192.168.1.20"], id="lan address"),
        pytest.param(["--listen-host", "0.0.0.0", "--allow-remote"], id="allow-remote no auth"),
        pytest.param(
            ["--listen-host", "0.0.0.0", "--allow-remote", "--set", "proxyauth="],
            id="allow-remote empty auth",
        ),
        pytest.param(
            ["--listen-host", "0.0.0.0", "--set", "proxyauth=u:p"],
            id="auth without allow-remote",
        ),
    ],
)
def test_run_refuses_a_non_loopback_listen_host(
    user: Path,
    capsys: pytest.CaptureFixture[str],
    started: list[argparse.Namespace],
    extra: list[str],
) -> None:
    assert main(["run", "--config", str(user), *extra]) == 2
    assert started == []
    assert "refusing to listen" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([], id="default"),
        pytest.param(["--listen-host", "127.0.0.1"], id="v4 loopback"),
        pytest.param(["--listen-host", "::1"], id="v6 loopback"),
        pytest.param(["--listen-host", "localhost"], id="localhost"),
        pytest.param(
            ["--listen-host", "0.0.0.0", "--allow-remote", "--set", "proxyauth=u:p"],
            id="allow-remote with auth",
        ),
    ],
)
def test_run_starts_on_loopback_or_with_auth(
    user: Path, started: list[argparse.Namespace], extra: list[str]
) -> None:
    assert main(["run", "--config", str(user), "--listen-port", "0", *extra]) == 0
    assert len(started) == 1


def test_run_with_a_broken_configuration_does_not_start(
    user: Path, capsys: pytest.CaptureFixture[str], started: list[argparse.Namespace]
) -> None:
    (user / "shopguard.yaml").write_text("mode: fast\n")
    assert main(["run", "--config", str(user)]) == 2
    assert started == []
    assert "shopguard.yaml:1: mode: expected one of observe, enforce" in capsys.readouterr().err


def test_policy_check_says_which_hosts_are_decrypted_and_why(
    user: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (user / "sites" / "jd.yaml").write_text("enabled: false\n")
    assert main(["policy", "check", "--config", str(user)]) == 0
    captured = capsys.readouterr()
    listed = {line.split()[0]: line for line in captured.out.splitlines()[:-1]}
    decrypts = {name: line.partition("  decrypts ")[2].split() for name, line in listed.items()}
    assert decrypts["taobao"][:2] == ["*.taobao.com", "*.tmall.com"]
    assert decrypts["third-party-pixels"][:2] == ["connect.facebook.net", "analytics.tiktok.com"]
    assert decrypts["jd"] == []  # disabled: not decrypted
    err = captured.err.splitlines()
    assert (
        "decrypted (TLS intercepted): only the hosts each enabled site's line lists after "
        "`decrypts`; every other host passes through as an opaque tunnel, never decrypted"
    ) in err
    (note,) = [line for line in err if line.startswith("note: third-party-pixels's hosts")]
    assert "are decrypted for every website, not only the marketplaces" in note
    assert "the Referer that tells which page fired them is only readable after decryption" in note
    assert note.endswith(
        f"to stop: `enabled: false` in {user / 'sites' / 'third-party-pixels.yaml'}"
    )


def test_policy_check_with_the_pixel_file_off_decrypts_no_pixel_host(
    user: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (user / "sites" / "third-party-pixels.yaml").write_text("enabled: false\n")
    assert main(["policy", "check", "--config", str(user)]) == 0
    captured = capsys.readouterr()
    assert "decrypted (TLS intercepted)" in captured.err
    assert "connect.facebook.net" not in captured.out + captured.err
    assert "every website" not in captured.err
