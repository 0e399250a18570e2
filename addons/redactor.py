"""Redactor: applies each site's policy — blocks, strips, replaces — or, in observe mode, says
what it would do. Decisions come from the engine (`shopguard.engine.redact`); this addon only
moves them onto mitmproxy flows."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from mitmproxy import http

from shopguard import paths
from shopguard.adapt import header_pairs, plain_request
from shopguard.engine.findings import Finding
from shopguard.engine.hosts import normalize_host
from shopguard.engine.redact import (
    Action,
    Outcome,
    redact,
    redact_message,
    tracker_block,
    uninspected_block,
)
from shopguard.engine.settings import Site
from shopguard.runtime import META, Runtime, guarded, local_response


def blocked_response(action: Action) -> http.Response:
    """204 without a body for beacons, scripts and images; a short page for documents."""
    if action.status == 204:
        return http.Response.make(204, b"", {"cache-control": "no-store"})
    why = action.reason or "it matches a tracker rule"
    return local_response(
        action.status or 403,
        "Blocked by shopguard",
        f"shopguard did not send this request because {why} (rule {action.rule}). "
        "Change the site's policy or mode to let it through.",
    )


class Redactor:
    """Runs after the inspector (it needs the findings) and before the recorder."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def site(self, state: dict[str, Any]) -> Site | None:
        config = self.rt.config
        return config.site(state["site"]) if config is not None else None

    @guarded
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get(META)
        if state is None or flow.response is not None:
            return
        site = self.site(state)
        if site is None:
            return
        request = flow.request
        headers = [(k, v) for k, v in request.headers.items(multi=True)]
        enforce = state["mode"] == "enforce"
        action = tracker_block(
            site.policy, normalize_host(state["host"]), request.path, headers, enforce
        )
        if action is None and request.stream:
            # a streamed body leaves before anything could read it: decide now
            reason = "its body is streamed and cannot be inspected"
            action = uninspected_block(site.policy, headers, enforce, reason)
        if action is None:
            return
        state["actions"].append(action.to_dict())
        if action.applied:
            flow.response = blocked_response(action)

    @guarded
    def request(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get(META)
        if state is None or flow.response is not None:
            return  # blocked already: nothing leaves, nothing to edit
        if any(a["action"] == "block" for a in state["actions"]):
            return  # observe mode, and it would be blocked: edits would not matter
        site = self.site(state)
        if site is None or self.rt.config is None:
            return
        enforce = state["mode"] == "enforce"
        detector = self.rt.detector
        adapted, self.rt.adapted = self.rt.adapted, None
        if adapted is not None and adapted[0] == flow.id:
            request = adapted[1]  # as the inspector read it, just before (nothing ran since)
        else:
            request = plain_request(flow, self.rt.config.settings.body_cap)
        outcome = redact(
            site.policy,
            request,
            normalize_host(state["host"]),
            [Finding(**f) for f in state["findings"]],
            site=site.name,
            secret=detector.secret if detector is not None else paths.install_secret(),
            enforce=enforce,
            inspection=state["inspection"],
            region=detector.region if detector is not None else "CN",
        )
        state["actions"].extend(a.to_dict() for a in outcome.actions)
        if not enforce:
            return
        if outcome.block_status is not None:
            block = next(a for a in outcome.actions if a.action == "block")
            flow.response = blocked_response(block)
        elif outcome.changed:
            apply(flow.request, outcome)

    @guarded
    def websocket_message(self, flow: http.HTTPFlow) -> None:
        """A message the client sends: its fields edited as a JSON body's (the field rules for
        its findings, and `strip_fields`)."""
        state = flow.metadata.get(META)
        if state is None or flow.websocket is None or "ws" not in state:
            return
        message = flow.websocket.messages[-1]
        site = self.site(state)
        if site is None or not message.from_client:
            return  # what the site sends is reported, never edited
        enforce = state["mode"] == "enforce"
        detector = self.rt.detector
        outcome = redact_message(
            site.policy,
            flow.request.url,
            message.content,
            normalize_host(state["host"]),
            [Finding(**f) for f in state["ws"]["findings"]],
            site=site.name,
            secret=detector.secret if detector is not None else paths.install_secret(),
            enforce=enforce,
            region=detector.region if detector is not None else "CN",
        )
        state["ws"]["actions"] = [a.to_dict() for a in outcome.actions]
        if not enforce:
            return
        if outcome.block_status is not None:
            message.drop()
        elif outcome.changed and outcome.body is not None:
            message.content = outcome.body


def apply(request: http.Request, outcome: Outcome) -> None:
    """Write an outcome's URL, headers and body onto a mitmproxy request."""
    if outcome.url_changed:
        split = urlsplit(outcome.url)
        path = split.path or "/"
        if split.query:
            path += f"?{split.query}"
        if split.fragment:
            path += f"#{split.fragment}"
        request.path = path
    # the engine saw the headers as `adapt` decodes them; unchanged ones keep their raw bytes
    seen = header_pairs(request.headers)
    raw = dict(zip(seen, request.headers.fields, strict=True))
    if outcome.headers != seen:
        kept_length = request.headers.get("content-length")
        request.headers = http.Headers(
            [
                raw.get((k, v)) or (k.encode("latin-1", "replace"), v.encode())
                for k, v in outcome.headers
            ]
        )
        if kept_length is not None and "content-length" not in request.headers:
            request.headers["content-length"] = kept_length
    if outcome.body is not None:
        request.content = outcome.body  # re-encoded as content-encoding says; length updated
