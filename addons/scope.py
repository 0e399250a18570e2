"""Scope: which configured site a flow belongs to; only those flows are intercepted."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http

from shopguard import paths
from shopguard.engine.hosts import allow_hosts_pattern
from shopguard.engine.located import ConfigErrors
from shopguard.engine.settings import MODES, Config, load_config
from shopguard.runtime import META, Runtime, guarded


def config_summary(config: Config, rt: Runtime) -> list[dict[str, Any]]:
    return [
        {"site": s.name, "mode": rt.mode_for(s.name), "hosts": [g.text for g in s.hosts]}
        for s in config.enabled_sites
    ]


class Scope:
    """Loads the configuration, limits TLS interception to the sites' hosts, tags each flow."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def load(self, loader: Any) -> None:
        loader.add_option(
            "shopguard_config",
            str,
            "",
            "shopguard config directory (shopguard.yaml, sites/*.yaml) laid over the shipped "
            "defaults; empty: the platform config directory.",
        )
        loader.add_option(
            "shopguard_mode",
            str,
            "",
            "Override every site's mode: observe or enforce; empty: as configured.",
        )

    def configure(self, updated: set[str]) -> None:
        if "shopguard_mode" in updated:
            mode = ctx.options.shopguard_mode
            if mode and mode not in MODES:
                raise exceptions.OptionsError(
                    f"shopguard_mode: expected observe or enforce, got {mode!r}"
                )
            self.rt.mode_override = mode or None
        if "shopguard_config" in updated:
            user = Path(ctx.options.shopguard_config) if ctx.options.shopguard_config else None
            if user is not None and not user.is_dir():
                raise exceptions.OptionsError(f"shopguard config directory not found: {user}")
            try:
                config = load_config(paths.shipped_config_dir(), user or paths.user_config_dir())
            except ConfigErrors as exc:
                raise exceptions.OptionsError(
                    "invalid shopguard configuration:\n" + str(exc)
                ) from exc
            self.rt.config = config
            self.rt.index = config.host_index()
            pattern = allow_hosts_pattern(g for s in config.enabled_sites for g in s.hosts)
            ctx.options.update(allow_hosts=[pattern])
        if updated & {"shopguard_config", "shopguard_mode"} and self.rt.config is not None:
            self.rt.emit(
                "policy_loaded",
                files=list(self.rt.config.files),
                sites=config_summary(self.rt.config, self.rt),
            )

    @guarded
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if META in flow.metadata or flow.request.method == "CONNECT":
            return
        request = flow.request
        host = request.pretty_host  # Host header or authority: the name the client asked for
        site = self.rt.index.attribute(
            host, request.headers.get("origin"), request.headers.get("referer")
        )
        if site is None:
            return
        flow.metadata[META] = {
            "site": site.name,
            "third_party": not site.is_first_party(host),
            "mode": self.rt.mode_for(site.name),
            "inspection": "none",
            "findings": [],
            "actions": [],
            "started": time.time(),
        }
