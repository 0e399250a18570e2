"""Progress of `report` and `scan` goes to stderr on a terminal only: never into the output a
script reads, and not at all when stderr is not a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.unit.test_report import SESSION, write


def run_on_a_terminal(argv: list[str]) -> tuple[str, str]:
    """stdout through a pipe, stderr on a pseudo-terminal, as `shopguard … | jq` in a shell."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "shopguard.cli.main", *argv],
        stdout=subprocess.PIPE,
        stderr=secondary,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200"},
    )
    os.close(secondary)
    seen = b""
    out, _ = process.communicate(timeout=60)
    for _ in range(1000):  # bounded: read what the terminal got
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    return out.decode(), seen.decode(errors="replace")


def test_report_progress_is_on_the_terminal_and_the_json_stays_clean(tmp_path: Path) -> None:
    log = write(tmp_path / "flows.jsonl", SESSION)
    out, terminal = run_on_a_terminal(["report", str(log), "--format", "json"])
    assert json.loads(out)["sites"]  # stdout is the document alone
    assert "read 1 files" in terminal and "MiB/s" in terminal


def test_no_progress_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    log = write(tmp_path / "flows.jsonl", SESSION)
    result = subprocess.run(
        [sys.executable, "-m", "shopguard.cli.main", "report", str(log), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stderr == ""


def test_scan_progress_never_mixes_into_jsonl(tmp_path: Path) -> None:
    from tests.unit.test_scan import entry, har

    capture = tmp_path / "c.har"
    capture.write_text(json.dumps(har([entry("https://www.taobao.com/s?mobile=13800138000")])))
    out, _ = run_on_a_terminal(["scan", str(capture), "--format", "jsonl"])
    assert [json.loads(line)["category"] for line in out.splitlines()] == ["phone"]
