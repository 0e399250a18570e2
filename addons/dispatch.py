"""mitmproxy's addon manager, calling for each event only the addons that handle it.

mitmproxy's own `AddonManager` visits every addon of its chain (about forty, nested ones
included) for every event of every flow — four events per request and an `update` after each —
looking the hook up by name, opening a `safecall` context and a coroutine per addon whether it
handles the event or not. On a marketplace page load that costs more than shopguard's detection.
`HookDispatch` works the list of handlers for an event out once and calls just those, in the
same order, with the same error handling (an addon's exception is logged, `AddonHalt` stops the
event, `OptionsError` propagates). The lists are worked out again whenever an addon is added,
registered or removed (a script loaded or reloaded), and after every change of options (which is
when mitmproxy's script loader reorders its scripts).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from mitmproxy import exceptions, flow, hooks
from mitmproxy.addonmanager import AddonManager, safecall

# an event's handlers, grouped by the addon of the chain they belong to (an exception in one
# handler skips the rest of its group, as mitmproxy does)
Groups = list[list[Callable[..., Any]]]


class HookDispatch(AddonManager):
    _handlers: dict[str, Groups]

    @classmethod
    def install(cls, manager: AddonManager) -> HookDispatch:
        """Make a master's addon manager (`master.addons`) this one, keeping its addons."""
        manager.__class__ = cls
        assert isinstance(manager, HookDispatch)
        manager._handlers = {}
        return manager

    def _changed(self) -> None:
        self._handlers = {}

    def _groups(self, event: hooks.Hook) -> Groups:
        groups = self._handlers.get(event.name)
        if groups is None:
            groups = []
            for addon in self.chain:
                found = [func for _, func in self._iter_hooks(addon, event)]
                if found:
                    groups.append(found)
            self._handlers[event.name] = groups
        return groups

    async def trigger_event(self, event: hooks.Hook) -> None:
        groups = self._groups(event)
        if groups:
            await self._call(groups, event.args())

    async def handle_lifecycle(self, event: hooks.Hook) -> None:
        args = event.args()
        groups = self._groups(event)
        if groups:
            await self._call(groups, args)
        if isinstance(args[0], flow.Flow):
            update = self._handlers.get("update")
            if update is None:
                update = self._groups(hooks.UpdateHook([]))
            if update:
                await self._call(update, [[args[0]]])

    @staticmethod
    async def _call(groups: Groups, args: list[Any]) -> None:
        for group in groups:
            try:
                for func in group:
                    result = func(*args)
                    if result is not None and inspect.isawaitable(result):
                        await result
            except exceptions.AddonHalt:
                return
            except exceptions.OptionsError:
                raise
            except Exception as exc:
                with safecall():  # logged as mitmproxy logs an addon's error
                    raise exc

    def trigger(self, event: hooks.Hook) -> None:
        super().trigger(event)
        if isinstance(event, hooks.ConfigureHook):
            self._changed()

    def register(self, addon: Any) -> Any:
        try:
            return AddonManager.register(self, addon)
        finally:
            self._changed()

    def add(self, *addons: Any) -> None:
        try:
            AddonManager.add(self, *addons)
        finally:
            self._changed()

    def remove(self, addon: Any) -> None:
        try:
            AddonManager.remove(self, addon)
        finally:
            self._changed()

    def clear(self) -> None:
        try:
            AddonManager.clear(self)
        finally:
            self._changed()
