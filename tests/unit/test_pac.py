"""`shopguard pac`: the text of the PAC file (how Chromium evaluates it: tests/e2e/test_pac.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopguard.cli.main import main


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Nothing touches the real home: config and state go to tmp directories."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_pac_treats_a_trailing_dot_as_the_same_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pac", "--listen-port", "8123"]) == 0
    text = capsys.readouterr().out
    body = text.split("function FindProxyForURL(url, host) {", 1)[1]
    first = body.strip().splitlines()
    code = [line for line in first if not line.strip().startswith("//")]
    # the host is normalised before any comparison: lower case, trailing dots dropped
    assert code[0].strip() == 'host = host.toLowerCase().replace(/\\.+$/, "");'
    assert 'return "PROXY 127.0.0.1:8123"' in text and 'return "DIRECT"' in text
