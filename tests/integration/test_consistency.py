"""The live proxy, `shopguard scan` and `shopguard policy explain` agree on the labelled corpora.

Every in-scope request of a corpus file (the synthetic one and the one rebuilt from real
traffic) is sent, in order, through a real `shopguard run`
(observe mode, the corpus profile) to a loopback upstream, which presents a certificate for
whatever host the client names (SNI) and answers with the corpus's
response headers; the same requests go into a HAR file for `shopguard scan`, and one by one to
`shopguard policy explain`. For each request:

- (b1) the proxy's `flow` line and scan's entry carry the same (category, location) pairs;
- (b2) explain, which sees the request alone, gives the proxy's pairs except those linked to
  an earlier request (`linked_from`; explain may still find such a pair by its key or shape,
  then without the link); checked apart for the request's own findings and for
  those of its response's Set-Cookie headers (`set-cookie:…`, given with
  `--response-header`).

A difference is printed per request: corpus file, flow id, and the pairs only one path has.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shopguard import paths
from shopguard.engine.settings import load_config
from tests.support.certs import UpstreamPKI, make_pki
from tests.support.corpus import CORPUS, corpus_files
from tests.support.explain import Explained, parse_explain, run_commands
from tests.support.proxy import SHOPGUARD, isolated_env, start_proxy
from tests.support.realcorpus import real_files
from tests.support.replay import (
    ReplayUpstream,
    WireRequest,
    har_document,
    send,
    wire_requests,
)

pytestmark = pytest.mark.integration

INDEX = load_config(paths.shipped_config_dir(), None).host_index()
FILES = corpus_files() + real_files()
LINE_WAIT = 5.0  # seconds for a request's flow line to appear in the log
CLI_TIMEOUT = 120.0
EXPLAIN_PROCESSES = 2

Slots = set[tuple[str, str]]


@dataclass
class Replayed:
    """One corpus file through the proxy and through scan."""

    corpus: str
    home: Path
    profile: Path
    requests: list[WireRequest]
    statuses: list[int | str] = field(default_factory=list)  # the proxy's answer, or an error
    lines: list[dict[str, Any] | None] = field(default_factory=list)  # each request's flow line
    scanned: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # findings per entry
    other_lines: list[dict[str, Any]] = field(default_factory=list)  # addon_error etc.
    explained: list[Explained | str] | None = None  # policy explain of each request alone

    def proxy_slots(self, index: int, linked: bool = True) -> Slots:
        line = self.lines[index]
        findings = line["findings"] if line else []
        return {
            (f["category"], f["location"]) for f in findings if linked or "linked_from" not in f
        }

    def scan_slots(self, index: int) -> Slots:
        return {(f["category"], f["location"]) for f in self.scanned.get(index, [])}


def _flow_lines(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    lines = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines() if x]
    return [x for x in lines if x.get("event") == "flow"]


def _run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = isolated_env(home) | {"PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [SHOPGUARD, *args],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=CLI_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def replay(
    path: Path, home: Path, profile: Path, upstream: ReplayUpstream, pki: UpstreamPKI
) -> Replayed:
    result = Replayed(path.name, home, profile, wire_requests(path, INDEX))
    assert result.requests, f"{path.name}: no in-scope request"
    proxy = start_proxy(
        home,
        "--profile",
        str(profile),
        "--mode",
        "observe",
        routes=upstream.routes,
        upstream_ca=pki.ca_pem,
    )
    try:
        for request in result.requests:
            upstream.answers.queue(request)
            before = len(_flow_lines(proxy.log))
            try:
                result.statuses.append(send(proxy.port, request, proxy.ca))
            except OSError as exc:
                result.statuses.append(f"{type(exc).__name__}: {exc}")
            deadline = time.monotonic() + LINE_WAIT
            lines = _flow_lines(proxy.log)
            while len(lines) <= before and time.monotonic() < deadline:
                time.sleep(0.02)
                lines = _flow_lines(proxy.log)
            result.lines.append(lines[before] if len(lines) > before else None)
        result.other_lines = [
            x for x in proxy.lines() if x["event"] in ("addon_error", "profile_rejected")
        ]
    finally:
        proxy.stop()
    har = home / f"{path.stem}.har"
    har.write_text(json.dumps(har_document(result.requests), ensure_ascii=False), "utf-8")
    scan = _run_cli(home, "scan", str(har), "--format", "jsonl", "--profile", str(profile))
    assert scan.returncode == 0, f"shopguard scan failed: {scan.stderr}"
    for text in scan.stdout.splitlines():
        if text.strip():
            item = json.loads(text)
            result.scanned.setdefault(item["flow"], []).append(item)
    return result


@pytest.fixture(scope="module")
def corpus_pki(tmp_path_factory: pytest.TempPathFactory) -> UpstreamPKI:
    """The upstream's certificate covers no corpus host: each is issued when a client asks."""
    return make_pki(tmp_path_factory.mktemp("corpus-pki"), ["upstream.test"])


@pytest.fixture(scope="module")
def upstream(corpus_pki: UpstreamPKI) -> Iterator[ReplayUpstream]:
    server = ReplayUpstream(corpus_pki).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replayed(
    tmp_path_factory: pytest.TempPathFactory, upstream: ReplayUpstream, corpus_pki: UpstreamPKI
) -> Callable[[Path], Replayed]:
    """One proxy per corpus file (each file is one browsing sequence), run once per module."""
    done: dict[Path, Replayed] = {}

    def get(path: Path) -> Replayed:
        if path not in done:
            home = tmp_path_factory.mktemp(f"consistency-{path.stem}")
            profile = home / "profile.yaml"
            shutil.copyfile(CORPUS / "profile.yaml", profile)
            profile.chmod(0o600)
            done[path] = replay(path, home, profile, upstream, corpus_pki)
        return done[path]

    return get


def explain_argv(run: Replayed, index: int) -> list[str]:
    """`policy explain` of one request alone: its URL, method, headers and body."""
    request = run.requests[index]
    argv = ["policy", "explain", request.url, f"--method={request.method}"]
    argv += [f"--header={name}:{value}" for name, value in request.headers]
    argv += [f"--response-header={name}:{value}" for name, value in request.response_headers]
    if request.body:
        body = run.home / f"body-{index}"
        body.write_bytes(request.body)
        argv.append(f"--body=@{body}")
    return [*argv, "--profile", str(run.profile)]


def _describe(slots: Slots) -> str:
    return ", ".join(f"{c} {loc}" for c, loc in sorted(slots)) or "-"


def _report(run: Replayed, what: str, problems: list[str]) -> str:
    lines = [f"{run.corpus}: {len(problems)} of {len(run.requests)} requests differ ({what})"]
    lines += problems
    if run.other_lines:
        lines.append(f"proxy log events: {run.other_lines}")
    return "\n".join(lines)


def _header(run: Replayed, index: int, other_site: str) -> str:
    request, line = run.requests[index], run.lines[index]
    where = f"  #{index} {run.corpus}:{request.flow_id} {request.method} {request.url[:90]}"
    sites = f"routed to {request.site}; proxy site {line['site'] if line else '-'}; {other_site}"
    return f"{where}\n     ({sites}; proxy status {run.statuses[index]})"


def _line_problem(run: Replayed, index: int) -> str | None:
    request, line = run.requests[index], run.lines[index]
    if line is None:
        return "no flow line in the proxy's log"
    if line["host"] != request.host_header or line["method"] != request.method:
        return f"the next flow line is for {line['method']} {line['host']}"
    return None


def explain_all(run: Replayed) -> list[Explained | str]:
    """What explain says of each request, or why it said nothing (computed once per file)."""
    if run.explained is None:
        argvs = [explain_argv(run, i) for i in range(len(run.requests))]
        env = isolated_env(run.home) | {"PYTHONIOENCODING": "utf-8"}
        processes = min(EXPLAIN_PROCESSES, os.cpu_count() or 2)
        run.explained = [
            parse_explain(r.stdout) if r.code == 0 else f"exit {r.code}: {r.stderr.strip()}"
            for r in run_commands(argvs, env, processes, CLI_TIMEOUT)
        ]
    return run.explained


def _cases(xfails: dict[str, str], parts: tuple[str, ...] = ("",)) -> list[Any]:
    params = []
    for path in FILES:
        for part in parts:
            case = f"{path.stem}-{part}" if part else path.stem
            reason = xfails.get(f"{path.name}:{part}" if part else path.name)
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            params.append(pytest.param(path, *([part] if part else []), id=case, marks=marks))
    return params


# The cases that fail on the current code, and why (each failure message lists the requests).
PROXY_VS_SCAN_FAILS: dict[str, str] = {}
EXPLAIN_FAILS: dict[str, str] = {}


@pytest.mark.parametrize("corpus", _cases(PROXY_VS_SCAN_FAILS))
def test_proxy_and_scan_find_the_same(corpus: Path, replayed: Callable[[Path], Replayed]) -> None:
    run = replayed(corpus)
    assert any(run.lines) and run.scanned, "neither path found anything: broken harness"
    problems = []
    for index in range(len(run.requests)):
        sites = sorted({str(f["site"]) for f in run.scanned.get(index, [])})
        header = _header(run, index, f"scan site {', '.join(sites) or 'n/a (no finding)'}")
        if (problem := _line_problem(run, index)) is not None:
            problems.append(f"{header}\n     {problem}")
            continue
        proxy, scan = run.proxy_slots(index), run.scan_slots(index)
        if proxy != scan:
            problems.append(
                f"{header}\n"
                f"     only in the proxy: {_describe(proxy - scan)}\n"
                f"     only in scan:      {_describe(scan - proxy)}"
            )
    assert not problems, _report(run, "live proxy vs shopguard scan", problems)


def _of_part(slots: Slots, part: str) -> Slots:
    """The findings of the request itself, or those of its response (`set-cookie:…`)."""
    response = part == "response"
    return {s for s in slots if s[1].startswith("set-cookie:") == response}


@pytest.mark.parametrize(("corpus", "part"), _cases(EXPLAIN_FAILS, ("request", "response")))
def test_explain_alone_finds_what_the_proxy_finds_unlinked(
    corpus: Path, part: str, replayed: Callable[[Path], Replayed]
) -> None:
    """Per part: the request's own findings, and those of its response's Set-Cookie headers
    (given to explain with `--response-header`)."""
    run = replayed(corpus)
    explained = explain_all(run)
    assert any(isinstance(x, Explained) and x.findings for x in explained), "explain found nothing"
    problems = []
    for index, result in enumerate(explained):
        site = result.site if isinstance(result, Explained) else None
        header = _header(run, index, f"explain site {site or '-'}")
        if (problem := _line_problem(run, index)) is not None:
            problems.append(f"{header}\n     {problem}")
            continue
        if isinstance(result, str):
            problems.append(f"{header}\n     policy explain failed: {result}")
            continue
        proxy = _of_part(run.proxy_slots(index, linked=False), part)
        every = _of_part(run.proxy_slots(index), part)  # a linked slot may be found alone too
        alone = _of_part(result.slots, part)
        if proxy - alone or alone - every:
            problems.append(
                f"{header}\n"
                f"     only in the proxy (not linked): {_describe(proxy - alone)}\n"
                f"     only in explain:               {_describe(alone - every)}"
            )
    assert not problems, _report(run, f"live proxy vs policy explain alone, {part}", problems)
