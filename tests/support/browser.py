"""Headless Chromium (Debian's `chromium`) for the browser tests, and an NSS database that makes
it trust a CA the way a user's browser does: through its certificate store, every check of the
certificate chain applied (name constraints included)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
# Chromium resolves no name itself: a request it sends DIRECT fails at once, never reaching the
# network (through a proxy, the proxy resolves names, and the proxy's address is an IP literal)
NO_DNS = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"


def required(command: str, package: str) -> str:
    """The path of `command`; skips the calling test module where it is missing, except in CI."""
    found = shutil.which(command)
    if found is not None:
        return found
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"CI needs {command} for the browser tests: apt-get install {package}")
    pytest.skip(
        f"{command} not found: apt-get install {package} to run the browser tests",
        allow_module_level=True,
    )


def chromium_path() -> str:
    if found := shutil.which("chromium"):
        return found
    return shutil.which("chromium-browser") or required("chromium", "chromium")


def nss_home(home: Path, ca_pem: Path, nickname: str) -> Path:
    """A home directory whose NSS database (`~/.pki/nssdb`, where Chromium on Linux keeps the
    user's certificates) trusts `ca_pem` to identify websites."""
    certutil = required("certutil", "libnss3-tools")
    database = home / ".pki" / "nssdb"
    database.mkdir(parents=True, exist_ok=True)
    where = f"sql:{database}"
    for command in (
        [certutil, "-N", "-d", where, "--empty-password"],
        [certutil, "-A", "-d", where, "-t", "C,,", "-n", nickname, "-i", str(ca_pem)],
    ):
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    return home


def dump_dom(
    url: str, profile: Path, *flags: str, home: Path | None = None, budget_ms: int = 5000
) -> str:
    """The page's DOM after `budget_ms` of virtual time; for a page Chromium refused, the DOM of
    its error page, or (Chromium 156.0.8078.114 on, which dumps nothing then) the error it logs,
    as a comment: either names the error, e.g. ERR_CERT_INVALID."""
    env = dict(os.environ)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        env.pop(name, None)
    if home is not None:
        env["HOME"] = str(home)
    result = subprocess.run(
        [
            chromium_path(),
            *FLAGS,
            f"--user-data-dir={profile}",
            *flags,
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    failed = _LOAD_FAILED.search(result.stderr)
    if not result.stdout.strip() and failed is not None:
        return f"<!-- page load failed: {failed.group(1)} -->"
    return result.stdout


_LOAD_FAILED = re.compile(r"Page load failed: (net::ERR_[A-Z_]+)")
