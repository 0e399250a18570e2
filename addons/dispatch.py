"""mitmproxy's addon manager, calling for each event only the addons that handle it.

mitmproxy's own `AddonManager` visits every addon of its chain (about forty, nested ones
included) for every event of every flow — four events per request and an `update` after each —
looking the hook up by name, opening a `safecall` context and a coroutine per addon whether it
handles the event or not. On a marketplace page load that costs more than shopguard's detection.
`HookDispatch` works the handlers of an event out once and calls just those, in the same order,
with the same error handling (an addon's exception is logged as mitmproxy logs it, `AddonHalt`
stops the event, `OptionsError` propagates).

The handlers are worked out again whenever an addon is added, registered or removed, and after
every change of options (when mitmproxy's script loader loads, reorders or drops scripts). The
user's scripts themselves (`--set scripts=…`) are looked up on every event, as mitmproxy does:
a script may rebind a hook, change its own addons or hold a hook name that is not callable, and
gets mitmproxy's behaviour for all of it. One difference remains: an addon added while an event
is being handled gets the next event, not that one.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from mitmproxy import exceptions, flow, hooks
from mitmproxy.addonmanager import AddonManager, cut_traceback
from mitmproxy.addons.script import ScriptLoader

logger = logging.getLogger("mitmproxy.addonmanager")  # (where mitmproxy logs addon errors)

# An event's handlers, one entry per addon of the chain that has any: its handlers (an
# exception in one skips the rest of them, as mitmproxy does), or the addon itself where they
# are looked up on each event (the script loader, once it holds scripts).
Group = list[Callable[..., Any]] | Any
Groups = list[Group]


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
                if isinstance(addon, ScriptLoader) and addon.addons:
                    groups.append(addon)  # (the user's scripts: looked up on each event)
                    continue
                try:
                    found = [func for _, func in self._iter_hooks(addon, event)]
                except exceptions.AddonManagerError:
                    groups.append(addon)  # (a hook name that is not callable: mitmproxy's error)
                    continue
                if found:
                    groups.append(found)
            self._handlers[event.name] = groups
        return groups

    async def trigger_event(self, event: hooks.Hook) -> None:
        groups = self._groups(event)
        if groups:
            await self._call(groups, event, event.args())

    async def handle_lifecycle(self, event: hooks.Hook) -> None:
        args = event.args()
        groups = self._groups(event)
        if groups:
            await self._call(groups, event, args)
        if isinstance(args[0], flow.Flow):
            update = self._handlers.get("update")
            if update is None:
                update = self._groups(hooks.UpdateHook([]))
            if update:
                event = hooks.UpdateHook([args[0]])
                await self._call(update, event, event.args())

    async def _call(self, groups: Groups, event: hooks.Hook, args: list[Any]) -> None:
        for group in groups:
            try:
                if type(group) is list:
                    for func in group:
                        result = func(*args)
                        if result is not None and inspect.isawaitable(result):
                            await result
                else:
                    await self.invoke_addon(group, event)
            except exceptions.AddonHalt:
                return
            except exceptions.OptionsError:
                raise
            except Exception as exc:  # logged as mitmproxy's `safecall` logs it
                tb = cut_traceback(cut_traceback(exc.__traceback__, "_call"), "invoke_addon")
                logger.error(f"Addon error: {exc}", exc_info=(type(exc), exc, tb))

    def trigger(self, event: hooks.Hook) -> None:
        try:
            super().trigger(event)
        finally:
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
