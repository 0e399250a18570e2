"""Shared by the addon tests: the shopguard addon chain inside taddons, over a user config
directory, and flows to given hosts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow

from shopguard.chain import make_addons
from shopguard.runtime import Runtime

HOOKS = ("requestheaders", "request", "responseheaders", "response")


@dataclass
class Proxy:
    rt: Runtime
    addons: list[Any]
    tctx: taddons.context
    config: Path
    log: Path

    def run(self, flow: http.HTTPFlow, hooks: tuple[str, ...] = HOOKS) -> http.HTTPFlow:
        for hook in hooks:
            for addon in self.addons:
                if hasattr(addon, hook):
                    getattr(addon, hook)(flow)
        return flow

    def lines(self, event: str | None = None) -> list[dict[str, Any]]:
        found = [json.loads(x) for x in self.log.read_text(encoding="utf-8").splitlines()]
        return [x for x in found if event is None or x["event"] == event]

    @property
    def recorder(self) -> Any:
        return self.addons[-1]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Proxy]]:
    """Starts the addon chain over a user config dir made of the given files."""
    contexts: list[tuple[taddons.context, Runtime]] = []

    def starter(files: dict[str, str] | None = None, **options: str) -> Proxy:
        config = tmp_path / "config"
        (config / "sites").mkdir(parents=True, exist_ok=True)
        for name, text in (files or {}).items():
            (config / name).write_text(text, encoding="utf-8")
        log = tmp_path / "flows.jsonl"
        rt = Runtime()
        addons = make_addons(rt)
        tctx = taddons.context(*addons)
        contexts.append((tctx, rt))
        tctx.configure(addons[0], shopguard_config=str(config), shopguard_log=str(log), **options)
        return Proxy(rt, addons, tctx, config, log)

    yield starter
    for tctx, rt in contexts:
        if rt.audit is not None:
            rt.audit.close()
        tctx.__exit__(None, None, None)


@pytest.fixture
def proxy(start: Callable[..., Proxy]) -> Proxy:
    return start()


def request_to(
    host: str,
    path: str = "/",
    *,
    method: str = "GET",
    referer: str | None = None,
    origin: str | None = None,
    resp: bool = False,
    err: bool = False,
) -> http.HTTPFlow:
    flow = tflow.tflow(resp=resp, err=err)
    flow.request.scheme, flow.request.host, flow.request.port = "https", host, 443
    flow.request.headers.clear()
    flow.request.headers["host"] = host
    flow.request.method = method
    flow.request.path = path
    flow.request.content = b""
    if referer:
        flow.request.headers["referer"] = referer
    if origin:
        flow.request.headers["origin"] = origin
    return flow


def respond(flow: http.HTTPFlow, status: int = 200) -> http.HTTPFlow:
    flow.response = http.Response.make(status, b"ok", {"content-type": "text/plain"})
    return flow
