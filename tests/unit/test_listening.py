"""`shopguard run` listens on loopback only, unless told otherwise with --allow-remote and
credentials that are checked — whichever way it is told where to listen."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.addons import proxyauth
from mitmproxy.test import taddons

from shopguard.cli import run as run_module
from shopguard.cli.main import build_parser, main


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[argparse.Namespace]:
    """Replaces the proxy itself: records that `run` would have started it."""
    calls: list[argparse.Namespace] = []

    async def fake_serve(args: argparse.Namespace) -> int:
        calls.append(args)
        return 0

    monkeypatch.setattr(run_module, "serve", fake_serve)
    return calls


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    path = tmp_path / "users.htpasswd"
    path.write_text("me:$apr1$0a1b2c3d$0123456789abcdefghijkl\n")
    return path


AUTH = ["--allow-remote", "--set", "proxyauth=me:long-secret"]

REFUSED = [
    pytest.param(["--listen-host", "0.0.0.0"], id="--listen-host any"),
    pytest.param(["--listen-host", "::"], id="--listen-host any v6"),
    pytest.param(["--listen-host", "192.168.1.20"], id="--listen-host lan"),
    pytest.param(["--listen-host", ""], id="--listen-host empty: every interface"),
    pytest.param(["--listen-host", "myhost.example"], id="--listen-host a name"),
    pytest.param(["--listen-host", "127.0.0.1", "--set", "listen_host=0.0.0.0"], id="--set host"),
    pytest.param(["--set", "listen_host="], id="--set host empty: every interface"),
    pytest.param(["--set", "mode=regular@0.0.0.0:8080"], id="regular@any"),
    pytest.param(["--set", "mode=regular@[::]:8080"], id="regular@[::]"),
    pytest.param(["--set", "mode=regular@192.168.1.20:8080"], id="regular@lan"),
    pytest.param(["--set", "mode=upstream:http://corp.example:3128@0.0.0.0:8080"], id="upstream"),
    pytest.param(["--set", "mode=socks5@0.0.0.0:1080"], id="socks5@any"),
    pytest.param(["--set", "mode=reverse:https://www.taobao.com@0.0.0.0:8443"], id="reverse@any"),
    pytest.param(["--set", "mode=regular", "--set", "mode=socks5@0.0.0.0:1080"], id="2nd mode"),
    pytest.param(["--set", "mode=socks5@1080", "--set", "listen_host=0.0.0.0"], id="socks5 host"),
    pytest.param(["--set", "mode=wireguard", "--listen-host", ""], id="wireguard everywhere"),
    pytest.param(["--set", "mode=wireguard@0.0.0.0:51820"], id="wireguard@any"),
    pytest.param(["--set", "mode=dns@0.0.0.0:5353"], id="dns@any"),
    pytest.param(["--listen-host", "0.0.0.0", "--allow-remote"], id="allow-remote no auth"),
    pytest.param(["--listen-host", "0.0.0.0", "--set", "proxyauth=me:pw"], id="auth, no allow"),
    pytest.param(
        ["--listen-host", "0.0.0.0", "--allow-remote", "--set", "proxyauth="], id="empty auth"
    ),
    pytest.param(
        ["--listen-host", "0.0.0.0", "--allow-remote", "--set", "proxyauth=any"], id="auth any"
    ),
    pytest.param(
        ["--set", "mode=socks5@0.0.0.0:1080", "--allow-remote", "--set", "proxyauth=any"],
        id="socks5 auth any",
    ),
    pytest.param(
        ["--listen-host", "0.0.0.0", "--allow-remote", "--set", "proxyauth=me:"],
        id="auth without password",
    ),
    pytest.param(
        ["--listen-host", "0.0.0.0", "--allow-remote", "--set", "proxyauth=:pw"],
        id="auth without user",
    ),
    # proxy authentication does not guard these modes: a reverse proxy relays the hosts no site
    # lists as opaque tunnels, DNS has no credentials, a transparent proxy sees no CONNECT
    pytest.param(["--set", "mode=reverse:http://shop.example@0.0.0.0:8443", *AUTH], id="rev+auth"),
    pytest.param(["--set", "mode=dns@0.0.0.0:5353", *AUTH], id="dns+auth"),
    pytest.param(["--set", "mode=transparent@0.0.0.0:8080", *AUTH], id="transparent+auth"),
    pytest.param(["--web", "--set", "web_host=0.0.0.0"], id="web interface on any"),
]


@pytest.mark.parametrize("extra", REFUSED)
def test_run_refuses_to_listen_where_others_could_use_it_unauthenticated(
    capsys: pytest.CaptureFixture[str], started: list[argparse.Namespace], extra: list[str]
) -> None:
    assert main(["run", *extra]) == 2
    assert started == []
    err = capsys.readouterr().err
    assert err.startswith("shopguard: refusing to ")
    assert err.count("\n") == 1  # one clear sentence, no traceback


ALLOWED = [
    pytest.param([], id="default"),
    pytest.param(["--listen-host", "127.0.0.1"], id="v4 loopback"),
    pytest.param(["--listen-host", "127.0.0.2"], id="another v4 loopback"),
    pytest.param(["--listen-host", "::1"], id="v6 loopback"),
    pytest.param(["--listen-host", "localhost"], id="localhost"),
    pytest.param(["--listen-host", "0.0.0.0", "--set", "listen_host=127.0.0.1"], id="--set wins"),
    pytest.param(["--set", "mode=regular@127.0.0.1:8081"], id="regular@loopback"),
    pytest.param(["--set", "mode=socks5@1080"], id="socks5 on the loopback default"),
    pytest.param(["--set", "mode=regular", "--set", "mode=socks5@::1:1080"], id="two modes"),
    pytest.param(["--set", "mode=reverse:https://www.taobao.com@127.0.0.1:8443"], id="reverse"),
    pytest.param(["--set", "mode=wireguard"], id="wireguard on the loopback default"),
    pytest.param(["--set", "mode=local"], id="local: no socket"),
    pytest.param(["--listen-host", "0.0.0.0", *AUTH], id="allow-remote with user:password"),
    pytest.param(["--set", "mode=socks5@0.0.0.0:1080", *AUTH], id="socks5 with auth"),
    pytest.param(
        ["--set", "mode=upstream:http://corp.example:3128@0.0.0.0:8080", *AUTH], id="upstream"
    ),
    pytest.param(
        [
            "--listen-host",
            "0.0.0.0",
            "--allow-remote",
            "--set",
            "proxyauth=ldaps:ldap.example.org:cn=proxy,dc=example:pw:ou=users,dc=example",
        ],
        id="allow-remote with ldap",
    ),
    pytest.param(["--set", "mode=wireguard@0.0.0.0:51820", "--allow-remote"], id="wg keys"),
    pytest.param(["--web", "--set", "web_host=0.0.0.0", "--allow-remote"], id="web + allow"),
]


@pytest.mark.parametrize("extra", ALLOWED)
def test_run_starts_on_loopback_or_with_checked_credentials(
    capsys: pytest.CaptureFixture[str], started: list[argparse.Namespace], extra: list[str]
) -> None:
    assert main(["run", "--listen-port", "0", *extra]) == 0, capsys.readouterr().err
    assert len(started) == 1


def test_an_htpasswd_file_is_checked_credentials(
    htpasswd: Path, started: list[argparse.Namespace]
) -> None:
    extra = ["--listen-host", "0.0.0.0", "--allow-remote", "--set", f"proxyauth=@{htpasswd}"]
    assert main(["run", "--listen-port", "0", *extra]) == 0
    assert len(started) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "mode=gopher@0.0.0.0:70"], "invalid mode 'gopher@0.0.0.0:70'"),
        (["--set", "mode=regular@0.0.0.0:port"], "invalid mode 'regular@0.0.0.0:port'"),
    ],
)
def test_run_rejects_a_mode_it_cannot_read(
    capsys: pytest.CaptureFixture[str],
    started: list[argparse.Namespace],
    extra: list[str],
    message: str,
) -> None:
    assert main(["run", *extra]) == 2
    assert started == []
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("modes", "host", "auth", "allow", "refused"),
    [
        (["regular"], "127.0.0.1", None, False, False),
        (["regular"], "", None, False, True),
        (["regular@0.0.0.0:8080"], "127.0.0.1", "me:pw", True, False),
        (["regular@0.0.0.0:8080"], "127.0.0.1", "any", True, True),
        (["socks5@10.0.0.2:1080"], "127.0.0.1", "me:pw", False, True),
        (["reverse:tcp://db.example:5432@0.0.0.0:5432"], "127.0.0.1", "me:pw", True, True),
        (["wireguard"], "0.0.0.0", None, True, False),
        (["wireguard"], "0.0.0.0", None, False, True),
        (["tun"], "0.0.0.0", None, False, False),  # an interface, no socket to reach
    ],
)
def test_the_decision_follows_mitmproxys_reading_of_each_mode(
    modes: list[str], host: str, auth: str | None, allow: bool, refused: bool
) -> None:
    problem = run_module.listen_refusal(modes, host, auth, allow_remote=allow)
    assert (problem is not None) == refused, problem


def test_an_option_change_while_running_cannot_expose_the_proxy() -> None:
    """A script or mitmweb's options editor changing where it listens is refused (and rolled
    back) like the command line."""
    guard = run_module.ListenGuard(allow_remote=False)
    with taddons.context(proxyauth.ProxyAuth()) as tctx:
        tctx.options.update(listen_host="127.0.0.1", mode=["regular"])
        tctx.master.addons.add(guard)
        for change in (
            {"listen_host": "0.0.0.0"},
            {"mode": ["regular", "socks5@0.0.0.0:1080"]},
            {"listen_host": "0.0.0.0", "proxyauth": "me:pw"},  # no --allow-remote
        ):
            with pytest.raises(exceptions.OptionsError, match="refusing to listen"):
                tctx.configure(guard, **change)
            assert tctx.options.listen_host == "127.0.0.1"
            assert tctx.options.mode == ["regular"]
        tctx.configure(guard, mode=["regular@127.0.0.1:8081"])  # loopback: fine


def test_the_guard_sees_a_change_before_mitmproxys_proxy_server() -> None:
    """The guard comes first in the addon chain, so the proxy server never starts a server on
    a refused address, not even for a moment."""

    async def chain() -> list[str]:
        args = build_parser().parse_args(["run", "--listen-port", "0"])
        master, _, _ = run_module.build_master(args)
        try:
            with pytest.raises(exceptions.OptionsError):
                master.options.update(listen_host="0.0.0.0")
            assert master.options.listen_host == "127.0.0.1"
            return [type(addon).__name__ for addon in master.addons.chain]
        finally:
            master.shutdown()

    names = asyncio.run(chain())
    assert names[0] == "ListenGuard"
    assert names.index("ListenGuard") < names.index("Proxyserver")
