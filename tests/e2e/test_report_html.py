"""The HTML report in headless Chromium: it renders (its script ran under its own
Content-Security-Policy), logs no console error, and fetches nothing — a recording proxy that
Chromium is pointed at must receive no connection."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from shopguard.cli.main import main
from tests.support.browser import FLAGS, NO_DNS, chromium_path
from tests.unit.test_report import SESSION, write

pytestmark = pytest.mark.e2e
ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artefacts"


class Recorder:
    """A TCP listener on loopback that counts the connections it gets (it answers nothing)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.requests: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(2)
            try:
                self.requests.append(conn.recv(200).split(b"\r\n")[0].decode("latin-1"))
            except OSError:
                self.requests.append("")
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def test_the_html_report_renders_offline_and_fetches_nothing(tmp_path: Path) -> None:
    log = write(tmp_path / "flows.jsonl", SESSION)
    page = tmp_path / "report.html"
    assert main(["report", str(log), "--format", "html", "-o", str(page)]) == 0
    assert os.stat(page).st_mode & 0o777 == 0o600
    text = page.read_text(encoding="utf-8")
    assert "default-src 'none'" in text and 'style="' not in text  # (no inline style attributes)
    assert "3 requests to 1 site, " in text and "2 kinds of data reached third parties" in text
    recorder = Recorder()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    ARTEFACTS.mkdir(exist_ok=True)
    shot = ARTEFACTS / "report.png"
    common = [
        chromium_path(),
        *FLAGS,
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--proxy-server=http://127.0.0.1:{recorder.port}",
        "--proxy-bypass-list=<-loopback>",  # (even loopback would go to the recorder)
        NO_DNS,
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=3000",
    ]
    try:
        dom = subprocess.run(
            [*common, "--dump-dom", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        subprocess.run(
            [*common, "--window-size=1280,1800", f"--screenshot={shot}", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    finally:
        recorder.close()
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-ready="yes"' in dom.stdout  # the script ran: its hash is in the policy
    assert 'class="data heatmap"' in dom.stdout and "connect.facebook.net" in dom.stdout
    assert "138****8000" in dom.stdout
    console = [x for x in dom.stderr.splitlines() if "CONSOLE" in x or "Refused" in x]
    assert console == [], console  # no error, no blocked inline style or script
    # it fetched nothing: what reached the recorder is Chromium's own background traffic to
    # Google's services (network time, component updates: Chromium 156.0.8078.114 asks for one
    # on demand with a POST), which no page can cause
    own = re.compile(
        r"^(?:GET http://|POST http://|CONNECT )"
        r"[a-z0-9.-]+\.(?:google\.com|googleapis\.com|gvt1\.com)[:/]"
    )
    assert [r for r in recorder.requests if not own.match(r)] == []
    assert shot.exists() and shot.stat().st_size > 10_000
    assert json.loads(json.dumps(str(shot)))  # (the screenshot stays for whoever looks)
