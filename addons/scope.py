"""Scope: which configured site a flow belongs to; only those flows are intercepted."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy import mode_specs

from shopguard import paths
from shopguard.engine.hosts import allow_hosts_pattern, normalize_host
from shopguard.engine.located import ConfigErrors
from shopguard.engine.pipeline import route, shown_host
from shopguard.engine.settings import MODES, Config, config_stamp, load_config
from shopguard.runtime import Runtime, guarded
from shopguard.state import META, FlowState

logger = logging.getLogger(__name__)


MISMATCH = "the request's Host header names another host than the one it is sent to"


def destination(flow: http.HTTPFlow) -> str:
    """The host a request really goes to, which its site and policy follow: in regular, upstream
    and SOCKS mode the request target (an absolute URL's host, or the tunnel's); in reverse
    mode the Host header, which shopguard keeps; in transparent, WireGuard and local mode the
    name the client gave in TLS, then the Host header (the target is only an address)."""
    request = flow.request
    mode = flow.client_conn.proxy_mode
    if isinstance(mode, mode_specs.ReverseMode):
        return request.pretty_host
    if isinstance(
        mode, mode_specs.TransparentMode | mode_specs.WireGuardMode | mode_specs.LocalMode
    ):
        return flow.client_conn.sni or request.host_header or request.host
    return request.host


class LastPages:
    """The marketplace page each client loaded last: a request without Origin or Referer to a
    host several sites share (a CDN, a tracker) belongs to the site the user is on."""

    MEMORY = 30 * 60.0  # seconds a page counts as the one its client is on
    CLIENTS = 1024  # (the oldest are forgotten past this many)

    def __init__(self) -> None:
        self._pages: dict[str, tuple[str, float]] = {}

    def loaded(self, client: str, url: str) -> None:
        self._pages.pop(client, None)
        self._pages[client] = (url, time.monotonic())
        if len(self._pages) > self.CLIENTS:
            del self._pages[next(iter(self._pages))]

    def last(self, client: str) -> str | None:
        seen = self._pages.get(client)
        if seen is None or time.monotonic() - seen[1] > self.MEMORY:
            return None
        return seen[0]


def _client(flow: http.HTTPFlow) -> str:
    """Who sent a request: the client's address (one browser, one phone)."""
    peer = flow.client_conn.peername
    return str(peer[0]) if peer else ""


def _is_page(request: http.Request) -> bool:
    """A page the browser shows (not a script, image or API call)."""
    if request.method != "GET":
        return False
    dest = request.headers.get("sec-fetch-dest")
    if dest is not None:
        return dest.strip().lower() in ("document", "iframe")
    return "text/html" in request.headers.get("accept", "").lower()


class Scope:
    """Loads the configuration, limits TLS interception to the sites' hosts, tags each flow."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.user_dir: Path | None = None
        self.stamp: tuple[tuple[str, int, int], ...] = ()
        self.pages = LastPages()
        rt.watchers.append(self.reload_if_changed)

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
            self.user_dir = user or paths.user_config_dir()
            self.stamp = config_stamp(paths.shipped_config_dir(), self.user_dir)
            try:
                config = load_config(paths.shipped_config_dir(), self.user_dir)
            except ConfigErrors as exc:
                raise exceptions.OptionsError(
                    "invalid shopguard configuration:\n" + str(exc)
                ) from exc
            self.install(config)
        if updated & {"shopguard_config", "shopguard_mode"} and self.rt.config is not None:
            self.rt.emit_policy_loaded()

    def running(self) -> None:
        self.rt.start_watching()

    def done(self) -> None:
        self.rt.stop_watching()

    def install(self, config: Config) -> None:
        self.rt.config = config
        self.rt.index = config.host_index()
        pattern = allow_hosts_pattern(g for s in config.enabled_sites for g in s.hosts)
        if ctx.options.allow_hosts != [pattern]:
            ctx.options.update(allow_hosts=[pattern])

    def reload_if_changed(self) -> None:
        """Pick up edited site files; an invalid edit keeps the last good configuration."""
        if self.rt.config is None:
            return
        stamp = config_stamp(paths.shipped_config_dir(), self.user_dir)
        if stamp == self.stamp:
            return
        self.stamp = stamp
        try:
            config = load_config(paths.shipped_config_dir(), self.user_dir)
        except ConfigErrors as exc:
            self.rt.emit("policy_rejected", errors=[str(e) for e in exc.errors])
            logger.warning("shopguard keeps the last good configuration:\n%s", exc)
            return
        self.install(config)
        self.rt.emit_policy_loaded()

    @guarded
    def http_connect(self, flow: http.HTTPFlow) -> None:
        """A tunnel to an in-scope host is tagged: if the site cannot be reached, the tunnel
        fails and its line (see the recorder) is all the user learns of the attempt."""
        if self.rt.config is not None:
            self._tag(flow, flow.request.host)

    @guarded
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.request.method == "CONNECT" or self.rt.config is None or not flow.live:
            return
        flow.metadata.pop(META, None)  # a replayed flow's saved state was another request's
        host = destination(flow)
        self._tag(flow, host)
        claimed = flow.request.pretty_host  # the Host header (or authority)
        state = self.rt.state(flow)
        if state is not None and normalize_host(claimed) != normalize_host(host):
            self.rt.emit(
                "host_mismatch",
                site=state["site"],
                host=self._shown(host),
                claimed=self._shown(claimed),
                note=MISMATCH,
            )

    def _shown(self, host: str) -> str:
        return host if self.rt.raw_values() else shown_host(self.rt.detector, host)

    def _tag(self, flow: http.HTTPFlow, host: str) -> None:
        assert self.rt.config is not None
        request = flow.request
        client = _client(flow)
        routed = route(
            self.rt.config,
            host,
            request.headers.get("origin"),
            request.headers.get("referer"),
            self.rt.mode_override,
            self.pages.last(client),
        )
        if routed is None:
            return  # not a configured site, or an ad pixel fired from elsewhere
        if not routed.third_party and not routed.site.referred_only and _is_page(request):
            self.pages.loaded(client, f"https://{routed.host}/")
        state: FlowState = {
            "site": routed.site.name,
            "host": host,
            "third_party": routed.third_party,
            "mode": routed.mode,
            "inspection": "none",
            "findings": [],
            "actions": [],
            "started": time.time(),
            "run": self.rt.run,
        }
        if routed.via is not None:
            state["via"] = routed.via
        flow.metadata[META] = state
