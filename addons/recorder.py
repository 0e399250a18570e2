"""Recorder: one JSON line per in-scope flow, plus proxy events, in shopguard's audit log."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http, tls

from shopguard import __version__, paths, terminal
from shopguard.adapt import url_text
from shopguard.auditlog import AuditLog
from shopguard.engine.location import segment_index
from shopguard.engine.masking import (
    host_labels,
    mask_host,
    mask_message,
    mask_method,
    mask_path,
)
from shopguard.engine.pipeline import shown_host
from shopguard.lines import unhandled, what_left
from shopguard.runtime import Runtime, guarded, local_response
from shopguard.state import FlowState

TLS_HINT = (
    "the client refused shopguard's certificate: either it does not trust shopguard's CA "
    "(see `shopguard ca`) or the app pins its certificates and cannot be inspected"
)


class Recorder:
    """Writes the audit log. Runs last, after every other shopguard addon has had the flow."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.started: float | None = None  # when the proxy started, for `proxy_stopped`
        self.mask = terminal.MaskMitmproxy(rt.raw_values)

    def load(self, loader: Any) -> None:
        terminal.install(self.mask)  # (mitmproxy's own handlers are in place by now)
        loader.add_option(
            "shopguard_log",
            str,
            "",
            "Path of shopguard's JSON-lines log; empty: as configured, else the platform "
            "state directory's flows.jsonl.",
        )

    def log_path(self) -> Path:
        if ctx.options.shopguard_log:
            return Path(ctx.options.shopguard_log).expanduser()
        assert self.rt.config is not None
        return self.rt.config.settings.log.path or paths.default_log_path()

    def configure(self, updated: set[str]) -> None:
        if not updated & {"shopguard_log", "shopguard_config"} or self.rt.config is None:
            return  # the scope addon loads the configuration first
        settings = self.rt.config.settings.log
        path = self.log_path()
        if self.rt.audit is not None and self.rt.audit.path == path:
            return
        audit = AuditLog(path, settings.rotate_bytes, settings.keep, settings.max_age_days)
        try:
            self.rt.attach_log(audit)
        except OSError as exc:
            raise exceptions.OptionsError(f"cannot write the shopguard log {path}: {exc}") from exc

    def done(self) -> None:
        """A clean stop, in `shopguard run` as under a user's own mitmdump or mitmweb: the
        session's last line."""
        if self.started is not None:
            uptime = round(time.monotonic() - self.started, 3)
            self.rt.emit("proxy_stopped", reason=self.rt.stop_reason, uptime_s=uptime)
            self.started = None
        terminal.uninstall(self.mask)

    def running(self) -> None:
        terminal.install(self.mask)  # (and mitmweb's, if it came later)
        config = self.rt.config
        assert config is not None
        proxy = ctx.master.addons.get("proxyserver")
        listen = [f"{a[0]}:{a[1]}" for a in proxy.listen_addrs()] if proxy else []
        self.rt.emit(
            "proxy_started",
            version=__version__,
            listen=listen,
            config=list(config.files),
            sites=self.rt.sites_summary(),
            confdir=ctx.options.confdir,
            log=str(self.log_path()),
        )
        self.started = time.monotonic()

    @guarded
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """No unrecorded enforcement: while the log cannot be written, enforce mode blocks."""
        state = self.rt.state(flow)
        if state is None or flow.response is not None or not flow.live or self.rt.log_ready():
            return
        if state["mode"] == "enforce":
            state["actions"].append({"action": "block", "reason": "log unavailable"})
            flow.response = local_response(
                502,
                "shopguard stopped this request",
                "shopguard cannot write its log, and this site is in enforce mode, so the "
                "request was not sent. See shopguard's error output.",
            )

    @guarded
    def response(self, flow: http.HTTPFlow) -> None:
        self.record(flow)

    @guarded
    def websocket_message(self, flow: http.HTTPFlow) -> None:
        """A WebSocket message with findings: a line of its own (with what was done to it)."""
        state = self.rt.state(flow)
        if state is None or "ws" not in state:
            return
        message = state.pop("ws")
        if message["findings"] or message["actions"]:
            message["findings"] = what_left(message["findings"], message["actions"], True)
            self.rt.emit("ws_message", site=state["site"], host=state["host"], **message)

    @guarded
    def error(self, flow: http.HTTPFlow) -> None:
        """A flow that failed, before or after its response's headers (a reset or truncated
        body, bad chunking, a client gone mid-upload): the request may have reached the site,
        so it gets its line, with the error (a flow recorded at its response is not again)."""
        self.record(flow)

    @guarded
    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        """A tunnel to an in-scope site that failed (the site is unreachable): nothing was
        sent, but the attempt gets its line, with mitmproxy's reason."""
        self.record(flow)

    def record(self, flow: http.HTTPFlow) -> None:
        state = self.rt.state(flow)
        if state is None or state.get("recorded"):
            return
        state["recorded"] = True
        request = flow.request
        raw = self.rt.raw_values()
        path = url_text(request.path)  # (bytes that are not UTF-8 as %XX: the log is UTF-8)
        line: dict[str, Any] = {
            "site": state["site"],
            "host": state["host"]
            if raw
            else mask_host(state["host"], host_labels(f["location"] for f in state["findings"])),
            "method": request.method if raw else mask_method(request.method),
            "path": path
            if raw
            else mask_path(path, _path_findings(state), state.get("masked_names")),
        }
        if request.method == "CONNECT":  # a failed tunnel: its 502 is mitmproxy's, not the site's
            reason = (flow.response.get_text(strict=False) or "") if flow.response else ""
            line["error"] = error_text(reason.partition(" If you plan")[0], raw)  # `Cannot …`
        elif flow.response is not None:
            line["status"] = flow.response.status_code
        if flow.error is not None:
            line["error"] = error_text(flow.error.msg, raw)
        line.update(
            third_party=state["third_party"],
            mode=state["mode"],
            inspection=state["inspection"],
        )
        if "inspection_notes" in state:
            line["inspection_notes"] = state["inspection_notes"]
        sent = flow.server_conn.timestamp_tcp_setup is not None or flow.response is not None
        findings = what_left(state["findings"], state["actions"], sent)
        _mark(flow, findings, state["actions"])
        line.update(
            findings=findings,
            actions=state["actions"],
            duration_ms=round((time.time() - state["started"]) * 1000, 1),
        )
        if "via" in state:
            line["via"] = state["via"]  # the site whose page fired this (ad pixels)
        if "addon_error" in state:
            line["addon_error"] = state["addon_error"]
        self.rt.emit("flow", **line)

    def tls_failed_client(self, data: tls.TlsData) -> None:
        host = data.conn.sni
        if not host:
            return
        site = self.rt.index.attribute(host)
        if site is None or site.referred_only:
            return  # not a site, or ad pixels: whose page fired them is unknown before TLS
        raw = self.rt.raw_values()
        self.rt.emit(
            "tls_failed",
            site=site.name,
            host=host if raw else shown_host(self.rt.detector, host),
            error=error_text(data.conn.error or "", raw),
            hint=TLS_HINT,
        )


def error_text(message: str, raw: bool) -> str:
    """An error as the log shows it: mitmproxy's messages quote the bytes they choke on (a
    chunk header, a status line, the peer's address), so values are masked unless raw."""
    return message if raw else mask_message(message)


def _path_findings(state: FlowState) -> set[int]:
    """Indexes of the path segments that carry a finding (`path:N`)."""
    found = (segment_index(f["location"]) for f in state["findings"])
    return {index for index in found if index is not None}


def _mark(
    flow: http.HTTPFlow, findings: list[dict[str, Any]], actions: list[dict[str, Any]]
) -> None:
    """Under mitmweb: what the flow carried and what became of each value, in its comment; ⚠
    where a value left with no rule acting on it, ✔ where every value is handled."""
    if not findings:
        return
    fates = []
    leaks = False
    for finding in findings:
        loose = unhandled(finding, actions)
        leaks = leaks or loose
        if finding.get("received"):
            fate = "received"
        elif finding.get("left") is False:
            fate = "stopped"
        else:
            fate = "sent, no rule" if loose else "sent"
        fates.append(f"{finding['category']} at {finding['location']}: {fate}")
    flow.comment = "shopguard: " + "; ".join(fates)
    flow.marked = ":warning:" if leaks else ":heavy_check_mark:"
