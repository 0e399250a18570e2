"""Files shopguard creates for itself: private directories and the fingerprint secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shopguard import paths


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def test_secret_is_created_once_private_and_stable(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        first = paths.install_secret()
    finally:
        os.umask(old)
    secret_file = tmp_path / "state" / "shopguard" / "secret.key"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "state" / "shopguard").stat().st_mode & 0o777 == 0o700
    assert len(first) == 32
    assert paths.install_secret() == first


def test_private_dir_creates_missing_parents_with_mode_700(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        target = paths.private_dir(tmp_path / "a" / "b" / "c")
    finally:
        os.umask(old)
    for directory in (tmp_path / "a", tmp_path / "a" / "b", target):
        assert directory.stat().st_mode & 0o777 == 0o700


def test_shipped_defaults_and_entry_script_exist() -> None:
    assert (paths.shipped_config_dir() / "shopguard.yaml").is_file()
    assert (paths.shipped_config_dir() / "sites" / "taobao.yaml").is_file()
    assert "make_addons" in paths.addon_script().read_text()
