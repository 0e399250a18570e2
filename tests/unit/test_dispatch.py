"""shopguard's addon manager calls only the addons that handle an event, and otherwise behaves
as mitmproxy's: same order, nested addons, errors logged, AddonHalt, async hooks, addons added
and removed while running."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from mitmproxy import exceptions, hooks
from mitmproxy.addonmanager import AddonManager
from mitmproxy.addons.script import ScriptLoader
from mitmproxy.proxy.layers.http import HttpRequestHeadersHook
from mitmproxy.test import taddons, tflow

from shopguard.dispatch import HookDispatch


class Recording:
    def __init__(self, name: str, calls: list[str], children: list[Any] | None = None) -> None:
        self.name = name
        self.calls = calls
        if children is not None:
            self.addons = children

    def requestheaders(self, flow: Any) -> None:
        self.calls.append(f"{self.name}.requestheaders")


class Silent:
    """Handles no flow event at all."""

    def __init__(self, name: str) -> None:
        self.name = name


class Failing(Recording):
    def requestheaders(self, flow: Any) -> None:
        self.calls.append(f"{self.name}.requestheaders")
        raise ValueError("broken addon")


class Halting(Recording):
    def requestheaders(self, flow: Any) -> None:
        self.calls.append(f"{self.name}.requestheaders")
        raise exceptions.AddonHalt()


class Awaiting(Recording):
    async def requestheaders(self, flow: Any) -> None:
        await asyncio.sleep(0)
        self.calls.append(f"{self.name}.requestheaders (awaited)")


class Updating(Recording):
    def update(self, flows: Any) -> None:
        self.calls.append(f"{self.name}.update({len(flows)})")


def _chain(calls: list[str]) -> list[Any]:
    return [
        Silent("s1"),
        Recording("a", calls, [Recording("a.child", calls), Silent("s2")]),
        Failing("b", calls, [Recording("b.child", calls)]),
        Awaiting("c", calls),
        Silent("s3"),
        Updating("d", calls),
    ]


def _run(manager: AddonManager, event: hooks.Hook) -> None:
    """One flow event, on the event loop of the test's master."""
    manager.master.event_loop.run_until_complete(manager.handle_lifecycle(event))


def _calls_with(fast: bool, events: int = 2) -> list[str]:
    calls: list[str] = []
    with taddons.context() as tctx:
        if fast:
            HookDispatch.install(tctx.master.addons)
        tctx.master.addons.add(*_chain(calls))
        for _ in range(events):
            _run(tctx.master.addons, HttpRequestHeadersHook(tflow.tflow()))
    return calls


@pytest.mark.parametrize("fast", [False, True], ids=["mitmproxy", "shopguard"])
def test_the_same_handlers_are_called_in_the_same_order_as_by_mitmproxy(fast: bool) -> None:
    expected = [
        "a.requestheaders",
        "a.child.requestheaders",
        "b.requestheaders",  # (it fails: its child is skipped, as mitmproxy does)
        "c.requestheaders (awaited)",
        "d.requestheaders",
        "d.update(1)",
    ] * 2
    assert _calls_with(fast) == expected


def test_an_addons_error_is_logged_and_the_next_addon_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    calls = _calls_with(fast=True, events=1)
    assert "c.requestheaders (awaited)" in calls
    assert any("Addon error: broken addon" in r.getMessage() for r in caplog.records)


def test_addon_halt_stops_the_event() -> None:
    calls: list[str] = []
    with taddons.context() as tctx:
        HookDispatch.install(tctx.master.addons)
        tctx.master.addons.add(Halting("h", calls), Recording("after", calls))
        _run(tctx.master.addons, HttpRequestHeadersHook(tflow.tflow()))
    assert calls == ["h.requestheaders"]


def test_only_addons_that_handle_an_event_are_visited() -> None:
    calls: list[str] = []
    with taddons.context() as tctx:
        manager = HookDispatch.install(tctx.master.addons)
        tctx.master.addons.add(*_chain(calls))
        _run(manager, HttpRequestHeadersHook(tflow.tflow()))
        handlers = [f.__self__.name for group in manager._handlers["requestheaders"] for f in group]
    assert handlers == ["a", "a.child", "b", "b.child", "c", "d"]


def test_addons_added_and_removed_while_running_are_seen_at_the_next_event() -> None:
    calls: list[str] = []
    with taddons.context() as tctx:
        manager = HookDispatch.install(tctx.master.addons)
        first = Recording("first", calls)
        manager.add(first)
        _run(manager, HttpRequestHeadersHook(tflow.tflow()))
        manager.add(Recording("second", calls))
        _run(manager, HttpRequestHeadersHook(tflow.tflow()))
        manager.remove(first)
        _run(manager, HttpRequestHeadersHook(tflow.tflow()))
    assert calls == [
        "first.requestheaders",
        "first.requestheaders",
        "second.requestheaders",
        "second.requestheaders",
    ]


def test_nested_addons_changed_on_an_options_change_are_seen() -> None:
    """As mitmproxy's script loader does: it reorders its scripts when `scripts` changes."""
    calls: list[str] = []

    class Loader:
        def __init__(self) -> None:
            self.addons: list[Any] = [Recording("one", calls)]

        def configure(self, updated: set[str]) -> None:
            if "upstream_cert" in updated:
                self.addons = [Recording("two", calls), *self.addons]

    with taddons.context() as tctx:
        manager = HookDispatch.install(tctx.master.addons)
        manager.add(Loader())
        _run(manager, HttpRequestHeadersHook(tflow.tflow()))
        tctx.master.options.update(upstream_cert=False)
        _run(manager, HttpRequestHeadersHook(tflow.tflow()))
    assert calls == ["one.requestheaders", "two.requestheaders", "one.requestheaders"]


def test_an_option_error_from_an_addon_reaches_the_caller() -> None:
    class Refusing:
        def running(self) -> None:
            raise exceptions.OptionsError("no")

    with taddons.context() as tctx:
        manager = HookDispatch.install(tctx.master.addons)
        manager.add(Refusing())
        with pytest.raises(exceptions.OptionsError):
            manager.master.event_loop.run_until_complete(manager.trigger_event(hooks.RunningHook()))


TOGGLING_SCRIPT = """
calls = []


class Toggle:
    def requestheaders(self, flow):
        calls.append("v1")
        self.requestheaders = self.second  # (a script may rebind its hooks)

    def second(self, flow):
        calls.append("v2")


class NotCallable:
    requestheaders = 1  # (a hook name that is not a hook: mitmproxy logs an error)

"""


def _with_script(
    fast: bool, tmp_path: Any, events: int, addons: str
) -> tuple[list[str], list[str]]:
    """A user's script (with `addons`) loaded by mitmproxy's script loader, as
    `--set scripts=…` does, with an addon after it; what both saw."""
    script = tmp_path / "toggling.py"
    script.write_text(f"{TOGGLING_SCRIPT}\naddons = {addons}\n", encoding="utf-8")
    after: list[str] = []
    with taddons.context() as tctx:
        manager = tctx.master.addons
        if fast:
            HookDispatch.install(manager)
        loader = ScriptLoader()
        manager.add(loader, Recording("after", after))

        async def load() -> None:
            tctx.master.options.update(scripts=[str(script)])
            for _ in range(100):  # (the loader reads the file in a task; bounded)
                if loader.addons and loader.addons[0].ns is not None:
                    return
                await asyncio.sleep(0.01)

        tctx.master.event_loop.run_until_complete(load())
        for _ in range(events):
            _run(manager, HttpRequestHeadersHook(tflow.tflow()))
        module = loader.addons[0].ns
        for running in loader.addons:
            running.done()
    return list(module.calls), after


@pytest.mark.parametrize("fast", [False, True], ids=["mitmproxy", "shopguard"])
def test_a_users_script_is_looked_up_on_every_event(fast: bool, tmp_path: Any) -> None:
    calls, after = _with_script(fast, tmp_path, 3, "[Toggle()]")
    assert calls == ["v1", "v2", "v2"]
    assert after == ["after.requestheaders"] * 3


@pytest.mark.parametrize("fast", [False, True], ids=["mitmproxy", "shopguard"])
def test_a_script_hook_that_is_not_callable_is_logged_and_stops_no_one_after_it(
    fast: bool, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    calls, after = _with_script(fast, tmp_path, 3, "[Toggle(), NotCallable()]")
    assert calls == ["v1", "v2", "v2"]
    assert after == ["after.requestheaders"] * 3
    errors = [r.getMessage() for r in caplog.records if "not callable" in r.getMessage()]
    assert len(errors) == 3


@pytest.mark.parametrize("fast", [False, True], ids=["mitmproxy", "shopguard"])
def test_an_addon_whose_hook_is_not_callable_is_logged_and_stops_no_one_after_it(
    fast: bool, caplog: pytest.LogCaptureFixture
) -> None:
    class NotCallable:
        requestheaders = 1

    caplog.set_level(logging.ERROR)
    after: list[str] = []
    with taddons.context() as tctx:
        manager = tctx.master.addons
        if fast:
            HookDispatch.install(manager)
        manager.add(NotCallable(), Recording("after", after))
        for _ in range(2):
            _run(manager, HttpRequestHeadersHook(tflow.tflow()))
    assert after == ["after.requestheaders"] * 2
    assert len([r for r in caplog.records if "not callable" in r.getMessage()]) == 2


def test_shopguard_run_uses_it() -> None:
    from shopguard.cli import run as run_module
    from shopguard.cli.main import build_parser

    async def manager() -> Any:
        args = build_parser().parse_args(["run", "--listen-port", "0"])
        master, _, _ = run_module.build_master(args)
        try:
            return master.addons
        finally:
            master.shutdown()

    found = asyncio.run(manager())
    assert isinstance(found, HookDispatch)
    assert [type(a).__name__ for a in found.chain][:1] == ["ListenGuard"]
