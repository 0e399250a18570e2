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


def test_own_dir_makes_an_existing_directory_private(tmp_path: Path) -> None:
    existing = tmp_path / "state"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    assert paths.own_dir(existing) == existing
    assert existing.stat().st_mode & 0o777 == 0o700
    created = paths.own_dir(tmp_path / "new" / "dir")
    assert created.stat().st_mode & 0o777 == 0o700


def test_private_dir_leaves_an_existing_directory_as_it_is(tmp_path: Path) -> None:
    theirs = tmp_path / "logs"
    theirs.mkdir()
    theirs.chmod(0o755)
    paths.private_dir(theirs)
    assert theirs.stat().st_mode & 0o777 == 0o755


def test_key_files_of_the_ca_directory_become_600_and_certificates_stay(tmp_path: Path) -> None:
    names = {
        "mitmproxy-ca.pem": 0o600,  # the CA's key and certificate
        "mitmproxy-ca.p12": 0o600,
        "shopguard-ca.pem": 0o600,  # whatever the CA is called
        "wireguard.conf": 0o600,
        "mitmproxy-ca-cert.pem": 0o644,
        "mitmproxy-ca-cert.p12": 0o644,
        "mitmproxy-ca-cert.cer": 0o644,
        "mitmproxy-dhparam.pem": 0o644,
    }
    for name in names:
        (tmp_path / name).write_text("x")
        (tmp_path / name).chmod(0o644)
    paths.protect_keys(tmp_path)
    assert {name: (tmp_path / name).stat().st_mode & 0o777 for name in names} == names
    paths.protect_keys(tmp_path / "missing")  # nothing to do


def test_an_existing_secret_readable_by_others_is_made_600(tmp_path: Path) -> None:
    first = paths.install_secret()
    secret_file = tmp_path / "state" / "shopguard" / "secret.key"
    secret_file.chmod(0o644)
    assert paths.install_secret() == first
    assert secret_file.stat().st_mode & 0o777 == 0o600
