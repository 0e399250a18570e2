"""State shared by one proxy's shopguard addons, and the fail-closed guard around their hooks."""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from mitmproxy import http
from mitmproxy.utils import asyncio_utils

from shopguard.auditlog import AuditLog
from shopguard.engine.detect import Detector
from shopguard.engine.hosts import HostIndex, normalize_host
from shopguard.engine.masking import mask_message
from shopguard.engine.pipeline import Context, Result, Routed, route
from shopguard.engine.settings import Config
from shopguard.engine.trackers import Linker
from shopguard.state import FlowState, state_of

logger = logging.getLogger(__name__)
WATCH_SECONDS = 1.0  # how often the configuration and profile files are looked at
MIN_ROOM = 1024 * 1024  # free bytes the log's file system must have for enforcement to go on


class Runtime:
    """Configuration, modes and the audit log, shared by one set of shopguard addons."""

    def __init__(self) -> None:
        self.config: Config | None = None
        self.index = HostIndex([])
        self.mode_override: str | None = None
        self.audit: AuditLog | None = None
        self.log_error: str | None = None
        self.log_full = False  # its file system has less than MIN_ROOM free
        self.detector: Detector | None = None  # set by the inspector
        self.linker = Linker()  # tracking values seen so far, for linking across requests
        # the pipeline's result for the flow whose request hook runs: the inspector makes it,
        # the redactor applies it right after (kept here, not in flow.metadata, which is saved)
        self.result: tuple[str, Result] | None = None
        self.watchers: list[Callable[[], None]] = []  # file checks run off the request path
        self._watch_task: asyncio.Task[None] | None = None
        self._context: Context | None = None
        self.run = os.urandom(6).hex()  # marks the flows this process tagged (not saved ones)
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self.observers: list[Callable[[str, dict[str, Any]], None]] = []  # of written lines
        self._held = False  # lines wait in `_pending` until the proxy listens (`hold_lines`)
        self.stop_reason = "shutdown"  # what `proxy_stopped` says (`shopguard run`: the signal)

    def state(self, flow: Any) -> FlowState | None:
        """The state of a flow this proxy tagged; None for flows of no site and for flows read
        back from a saved file, whose state describes another run."""
        state = state_of(flow)
        return state if state is not None and state.get("run") == self.run else None

    def raw_values(self) -> bool:
        """`log.values: raw`: the user asked for values in clear in what shopguard writes."""
        return self.config is not None and self.config.settings.log.values == "raw"

    def mode_for(self, site: str | None) -> str:
        """Effective mode: command line > site file > global file."""
        if self.config is None:
            return self.mode_override or "observe"
        return self.config.mode_for(site, self.mode_override)

    def context(self) -> Context | None:
        """What the engine's pipeline needs, once the configuration and detector are loaded."""
        ctx = self._context
        if (
            ctx is None
            or ctx.config is not self.config
            or ctx.detector is not self.detector
            or ctx.mode != self.mode_override
        ):
            if self.config is None or self.detector is None:
                return None
            ctx = self._context = Context(
                self.config, self.detector, self.linker, self.mode_override
            )
        return ctx

    def routed(self, state: FlowState) -> Routed | None:
        """The site a tagged flow belongs to, as the pipeline takes it."""
        site = self.config.site(state["site"]) if self.config is not None else None
        if site is None:
            return None
        host = normalize_host(state["host"])
        return Routed(site, host, state.get("via"), state["third_party"], state["mode"])

    def start_watching(self) -> None:
        """Look at the watched files once a second in the event loop, not on each request."""
        if self._watch_task is None and self.watchers:
            self._watch_task = asyncio_utils.create_task(
                self._watch(), name="shopguard file watcher", keep_ref=True
            )

    def stop_watching(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            self._watch_task = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            for check in self.watchers:
                try:
                    check()
                except Exception:  # a watcher must not die of one bad reload
                    logger.exception("shopguard could not reload its files")

    def emit_policy_loaded(self) -> None:
        """A `policy_loaded` line: the files and the sites in force, with their modes."""
        assert self.config is not None
        self.emit("policy_loaded", files=list(self.config.files), sites=self.sites_summary())

    def sites_summary(self) -> list[dict[str, Any]]:
        assert self.config is not None
        return [
            {"site": s.name, "mode": self.mode_for(s.name), "hosts": [g.text for g in s.hosts]}
            for s in self.config.enabled_sites
        ]

    def attach_log(self, audit: AuditLog) -> None:
        """Open `audit`, write what was emitted before it existed; raises OSError."""
        if self.audit is not None and self.audit is not audit:
            self.audit.close()
        audit.open()
        self.audit = audit
        if not self._held:
            self._write_pending()
        self.log_error = None

    def hold_lines(self) -> None:
        """Keep the lines emitted from now on until `release_lines`: a proxy that never gets to
        listen (its port is taken) writes nothing, not even into the log of the one that has
        the port."""
        self._held = True

    def release_lines(self) -> None:
        """The proxy listens: write the lines held back; raises OSError."""
        self._held = False
        if self.audit is not None:
            self._write_pending()

    def _write_pending(self) -> None:
        assert self.audit is not None
        pending, self._pending = self._pending, []
        for event, fields in pending:
            self.audit.write(event, **fields)

    def log_ready(self) -> bool:
        """Whether a flow's line can be expected to be written: the last write worked (or a
        `log_recovered` line can be written now), and the log's file system has room for it.

        Checked before a request leaves, so that a full disk stops enforcement before the first
        line is lost rather than after."""
        if self.audit is None:
            return True
        room = self.audit.room()
        if room is not None and room < MIN_ROOM:
            if not self.log_full:  # (a state of its own: lines written meanwhile do not end it)
                print(
                    f"shopguard: less than {MIN_ROOM // 1024} KiB free for the log "
                    f"{self.audit.path}: requests to enforce sites are stopped until there is room",
                    file=sys.stderr,
                    flush=True,
                )
                self.log_full = True
            return False
        if self.log_full:
            self.log_full = False
            print(f"shopguard: room for the log {self.audit.path} again", file=sys.stderr)
            return self.emit("log_recovered")
        return self.log_error is None or self.emit("log_recovered")

    def emit(self, event: str, **fields: Any) -> bool:
        """Write one log line; False (and a message on stderr) when it could not be written."""
        if self.audit is None or self._held:
            self._pending.append((event, fields))
            return True
        try:
            self.audit.write(event, **fields)
        except OSError as exc:
            self._log_failed(str(exc))
            return False
        for observer in self.observers:  # (the live status line of `shopguard run`)
            observer(event, fields)
        if self.log_error is not None:
            print(
                f"shopguard: writing the log {self.audit.path} again", file=sys.stderr, flush=True
            )
            self.log_error = None
        return True

    def _untagged_mode(self, request: http.Request | None) -> str:
        """The mode for a flow that failed before it was given to a site: its host's site's
        (fail closed), and observe for a host no site lists (other sites are left alone)."""
        if request is None:
            return self.mode_for(None)
        if self.config is None:
            return self.mode_for(None)
        try:  # as the scope addon would have routed it (a pixel needs a marketplace referrer)
            origin, referer = request.headers.get("origin"), request.headers.get("referer")
            routed = route(self.config, request.pretty_host, origin, referer, self.mode_override)
        except Exception:  # (this runs because something failed: it must not fail in turn)
            return self.mode_for(None)
        return routed.mode if routed is not None else "observe"

    def _log_failed(self, reason: str) -> None:
        if self.log_error is None and self.audit is not None:
            print(
                f"shopguard: cannot write the log {self.audit.path}: {reason}",
                file=sys.stderr,
                flush=True,
            )
        self.log_error = reason

    def fail_flow(self, flow: Any, addon: str, hook: str, exc: BaseException) -> None:
        """An addon raised on `flow`: block it in enforce mode, pass it in observe mode."""
        state = self.state(flow)
        site = state["site"] if state else None
        request = getattr(flow, "request", None)
        mode = state["mode"] if state else self._untagged_mode(request)
        blocked = mode == "enforce" and isinstance(flow, http.HTTPFlow) and flow.live
        reason = f"{type(exc).__name__} in {addon}.{hook}"
        self.emit(
            "addon_error",
            addon=addon,
            hook=hook,
            error_type=type(exc).__name__,
            message=mask_message(str(exc)),
            site=site,
            host=request.pretty_host if request is not None else None,
            mode=mode,
            outcome="blocked" if blocked else "passed",
        )
        if state is not None:
            state["addon_error"] = reason
        if blocked and hook == "websocket_message" and flow.websocket is not None:
            flow.websocket.messages[-1].drop()  # the message must not leave unchecked
        elif blocked:
            flow.response = local_response(
                502,
                "shopguard stopped this request",
                f"An internal error ({reason}) kept shopguard from checking this request. "
                "Because this site is in enforce mode, the request was not sent. "
                "The shopguard log has an addon_error line with the details.",
            )


def local_response(status: int, title: str, text: str) -> http.Response:
    """A short HTML page answered by the proxy itself, never sent upstream."""
    body = "<!doctype html><meta charset=utf-8><title>{t}</title><h1>{t}</h1><p>{x}</p>".format(
        t=html.escape(title), x=html.escape(text)
    )
    return http.Response.make(
        status,
        body.encode(),
        {"content-type": "text/html; charset=utf-8", "cache-control": "no-store"},
    )


def guarded[F: Callable[..., None]](hook: F) -> F:
    """Run a flow hook so that an exception fails the flow closed (enforce) or open (observe)."""

    @functools.wraps(hook)
    def wrapper(self: Any, flow: Any, *args: Any) -> None:
        try:
            hook(self, flow, *args)
        except Exception as exc:
            self.rt.fail_flow(flow, type(self).__name__, hook.__name__, exc)

    return wrapper  # type: ignore[return-value]
