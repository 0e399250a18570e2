"""Start a real `shopguard run` process on loopback and talk to it like a client would.

Every line of the proxy's log is checked against the log's JSON Schema whenever the log is read
and when the proxy stops: a line that does not follow it fails the test (`LineError`)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support.logschema import LineError, raw_problem, validate_file

ROUTE_SCRIPT = Path(__file__).with_name("route.py")
SHOPGUARD = shutil.which("shopguard", path=str(Path(sys.executable).parent)) or "shopguard"
START_TIMEOUT = 30.0


def isolated_env(home: Path, routes: dict[str, Any] | None = None) -> dict[str, str]:
    """An environment whose config, state and CA live below `home`."""
    env = dict(os.environ)
    env.update(
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_STATE_HOME=str(home / "state"),
        HOME=str(home),
        PYTHONUNBUFFERED="1",
    )
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        env.pop(name, None)
    if routes is not None:
        env["SHOPGUARD_TEST_ROUTES"] = json.dumps(routes)
    return env


class Output:
    """Collects a process's standard output in a thread, so the pipe never fills up."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # end of output
            self._changed.notify_all()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_line(self, prefix: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                if (self.lines and self.lines[-1] == "") or time.monotonic() > deadline:
                    return None
                self._changed.wait(timeout=0.2)

    def wait_port(self, timeout: float) -> int | None:
        line = self.wait_line("  listening on http://127.0.0.1:", timeout)
        return int(line.rsplit(":", 1)[1]) if line else None


@dataclass
class Proxy:
    process: subprocess.Popen[str]
    port: int
    log: Path
    ca: Path
    output: Output
    stderr_path: Path
    _seen: int = field(default=0)

    def lines(self, event: str | None = None) -> list[dict[str, Any]]:
        """The log's lines (of `event`), each checked against the schema."""
        if not self.log.exists():
            return []
        raw = [x for x in self.log.read_text(encoding="utf-8").splitlines() if x]
        for number, text in enumerate(raw, start=1):  # (each line's check is remembered)
            if (message := raw_problem(text)) is not None:
                raise LineError(f"{self.log}:{number}: {message}")
        items = [json.loads(x) for x in raw]
        return [x for x in items if event is None or x["event"] == event]

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Lines matching `predicate`, polling the log until there is one or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            found = [x for x in self.lines() if predicate(x)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the process, then check every line its log holds against the schema."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        validate_file(self.log)


def start_proxy(
    home: Path,
    *args: str,
    routes: dict[str, Any] | None = None,
    upstream_ca: Path | None = None,
    log: Path | None = None,
) -> Proxy:
    """`shopguard run --listen-port 0 …` with the routing script; waits for the banner."""
    log = log or home / "flows.jsonl"
    command = [SHOPGUARD, "run", "--listen-port", "0", "--log", str(log), *args]
    if routes is not None:
        command += ["--set", f"scripts={ROUTE_SCRIPT}"]
    if upstream_ca is not None:
        command += ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
    stderr_path = home / "proxy.stderr"
    stderr = stderr_path.open("w")
    process = subprocess.Popen(
        command,
        env=isolated_env(home, routes),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    stderr.close()
    output = Output(process)
    port = output.wait_port(START_TIMEOUT)
    if port is None:
        process.kill()
        process.wait(timeout=10)
        raise RuntimeError(
            f"shopguard did not start: {output.text}{stderr_path.read_text(errors='replace')}"
        )
    output.wait_line("  log:", 5.0)
    ca = home / "state" / "shopguard" / "mitmproxy" / "mitmproxy-ca-cert.pem"
    return Proxy(process, port, log, ca, output, stderr_path)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    issuer: str | None  # the certificate issuer's common name, for HTTPS


def fetch(
    proxy_port: int,
    url: str,
    *,
    cafile: Path | None = None,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One request through the proxy, as a browser would send it (CONNECT for HTTPS)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    issuer = None
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        conn = http.client.HTTPSConnection(
            "127.0.0.1", proxy_port, context=context, timeout=timeout
        )
        conn.set_tunnel(host, parts.port or 443)
        conn.request(method, path, body=body, headers=headers or {})
        cert = conn.sock.getpeercert()  # type: ignore[union-attr]
        for rdn in cert.get("issuer", ()):
            for key, value in rdn:
                if key == "commonName":
                    issuer = value
    else:
        conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=timeout)
        conn.request(method, url, body=body, headers=headers or {})
    response = conn.getresponse()
    reply = Reply(
        response.status,
        {k.lower(): v for k, v in response.getheaders()},
        response.read(),
        issuer,
    )
    conn.close()
    return reply
