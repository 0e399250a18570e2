"""A plain (non-editable) install works from any directory, and `mitmdump -s` loads the addons."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.certs import UpstreamPKI
from tests.support.logschema import validate_file
from tests.support.market import SHOP, FakeMarket
from tests.support.proxy import ROUTE_SCRIPT, Output, fetch, isolated_env

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_non_editable_install_finds_defaults_and_entry_script(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
        cwd=tmp_path,
    )
    env = isolated_env(tmp_path) | {"PYTHONPATH": str(target)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = "import sys; from shopguard.cli.main import main; sys.exit(main(sys.argv[1:]))"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            env=env,
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=60,
        )

    check = cli("policy", "check")
    assert check.returncode == 0, check.stderr
    assert "taobao" in check.stdout and str(target) in check.stdout
    path = Path(cli("addon-path").stdout.strip())
    assert path.is_file() and path.is_relative_to(target)
    assert "shopguard.chain" in path.read_text()
    schema = json.loads((target / "shopguard" / "data" / "log.schema.json").read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_mitmdump_loads_all_addons_from_the_entry_script(
    tmp_path: Path, market: FakeMarket, pki: UpstreamPKI
) -> None:
    script = subprocess.run(
        [str(BIN / "shopguard"), "addon-path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    log = tmp_path / "flows.jsonl"
    confdir = tmp_path / "mitmproxy"
    process = subprocess.Popen(
        [
            str(BIN / "mitmdump"),
            "--listen-host",
            "127.0.0.1",
            "-p",
            "0",
            "--set",
            f"confdir={confdir}",
            "-s",
            str(ROUTE_SCRIPT),  # (first: it gives tunnelled requests their name back)
            "-s",
            script,
            "--set",
            f"shopguard_log={log}",
            "--set",
            "shopguard_config=",
            "--set",
            f"ssl_verify_upstream_trusted_ca={pki.ca_pem}",
        ],
        env=isolated_env(tmp_path, market.routes),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        output = Output(process)
        deadline = time.monotonic() + 30
        port = None
        while port is None and time.monotonic() < deadline:
            match = re.search(r"proxy listening at 127\.0\.0\.1:(\d+)", output.text)
            port = int(match.group(1)) if match else None
            time.sleep(0.05)
        assert port, f"mitmdump did not start: {output.text}"
        reply = fetch(
            port, f"https://{SHOP}/?from=mitmdump", cafile=confdir / "mitmproxy-ca-cert.pem"
        )
        assert reply.status == 200 and reply.issuer == "mitmproxy"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "from=***" not in (
            log.read_text() if log.exists() else ""
        ):
            time.sleep(0.05)
        text = log.read_text()
        assert '"event": "policy_loaded"' in text
        assert '"site": "taobao"' in text and "/?from=***" in text
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert os.stat(log).st_mode & 0o777 == 0o600
    assert validate_file(log) >= 4  # policy_loaded, profile_loaded, the flow: as the schema says
    # a clean stop of the user's own mitmdump ends its session as `shopguard run`'s does
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events.count("proxy_started") == 1 and events[-1] == "proxy_stopped", events
