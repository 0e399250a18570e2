"""`shopguard purge`: old lines leave the log and its rotations, the rest stays byte for byte,
files are replaced whole and stay private, a log a running proxy holds is refused."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from shopguard.auditlog import AuditLog
from shopguard.cli.main import main
from tests.unit.test_report import SESSION, flow, write

placeholders = pytest.mark.placeholder_log_lines
OLD = flow("09:00:00", "www.jd.com", [], site="jd")  # 2026-11-26: over 5 days ago


def lines(path: Path) -> list[dict[str, object]]:
    raw = path.read_bytes()
    text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    return [json.loads(x) for x in text.decode().splitlines()]


def test_lines_older_than_the_age_go_newer_ones_stay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recent = {**SESSION[1], "timestamp": "2999-01-01T00:00:00Z"}
    log = write(tmp_path / "flows.jsonl", [OLD, recent, "not json"])
    log.write_text(log.read_text().replace('"not json"', "not json"))
    log.chmod(0o600)
    assert main(["purge", str(log), "--older-than", "5d"]) == 0
    assert log.read_text().splitlines() == [json.dumps(recent, ensure_ascii=False), "not json"]
    assert os.stat(log).st_mode & 0o777 == 0o600
    assert "removed 1 lines" in capsys.readouterr().out


def test_a_dry_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write(tmp_path / "flows.jsonl", [OLD])
    before = log.read_bytes()
    assert main(["purge", str(log), "--older-than", "5d", "--dry-run"]) == 0
    assert log.read_bytes() == before and "would remove 1 lines" in capsys.readouterr().out


def test_one_site_only_and_rotations_too(tmp_path: Path) -> None:
    log = write(tmp_path / "flows.jsonl", SESSION)  # taobao lines of 2026-11-26 and a start
    rotated = tmp_path / "flows.jsonl.20261125T000000000000Z.gz"
    rotated.write_bytes(gzip.compress((json.dumps(OLD) + "\n").encode()))
    config = tmp_path / "config"
    config.mkdir()
    (config / "shopguard.yaml").write_text(f"log:\n  path: {log}\n")
    assert main(["purge", "--config", str(config), "--older-than", "5d", "--site", "jd"]) == 0
    assert not rotated.exists()  # nothing but jd's old lines: the file went
    assert len(lines(log)) == len(SESSION)  # taobao's stay
    assert main(["purge", "--config", str(config), "--older-than", "5d"]) == 0
    assert lines(log) == []


@placeholders
def test_a_log_a_running_proxy_holds_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "flows.jsonl"
    audit = AuditLog(log, 2**20, 5, 0)
    audit.open()
    try:
        write(log, [OLD])
        assert main(["purge", str(log), "--older-than", "5d"]) == 2
        assert "in use by a running shopguard" in capsys.readouterr().err
        assert len(lines(log)) == 1
    finally:
        audit.close()
    assert main(["purge", str(log), "--older-than", "5d"]) == 0  # stopped: it may go


def test_an_age_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["purge"]) == 2 and "--older-than" in capsys.readouterr().err
