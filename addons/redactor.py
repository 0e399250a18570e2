"""Redactor: puts each site's decisions onto the flows: blocks, strips, replaces.

In observe mode it only records what it would do. The decisions are the pipeline's; this addon
moves them onto mitmproxy flows."""

from __future__ import annotations

from urllib.parse import urlsplit

from mitmproxy import ctx, http
from mitmproxy.net.http.http1.read import expected_http_body_size
from mitmproxy.utils import human

from shopguard.adapt import header_pairs, plain_request
from shopguard.engine import pipeline
from shopguard.engine.redact import Action, Outcome
from shopguard.runtime import Runtime, guarded, local_response

LATE = "the body was streamed on before shopguard could act (another addon streamed it)"


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
    """Runs after the inspector (it applies the pipeline's result) and before the recorder."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        # mitmproxy's `stream_large_bodies`, which shopguard applies itself: mitmproxy would
        # decide after the request headers (too late for a block) and start streaming an upload
        # once its size passes the threshold (past every rule)
        self.stream_above: int | None = None
        self._taking = False

    def configure(self, updated: set[str]) -> None:
        if "stream_large_bodies" not in updated or self._taking:
            return
        value = getattr(ctx.options, "stream_large_bodies", None)
        try:
            self.stream_above = human.parse_size(value) if value else None
        except ValueError:
            return  # (mitmproxy's own check rejects it)
        if self.stream_above is not None:
            self._taking = True
            try:
                ctx.options.update(stream_large_bodies=None)
            finally:
                self._taking = False

    @guarded
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Blocks decided from the request line, before a byte of the body can leave; then
        the streaming of a large body, if nothing blocked it."""
        state = self.rt.state(flow)
        request = flow.request
        # (the size matters only when streaming is configured: most runs skip it)
        size = self._size(request) if self.stream_above is not None else 0
        if state is None:  # not a site's: streamed as mitmproxy would, and chunked uploads too
            if self.stream_above is not None and (size is None or size > self.stream_above):
                request.stream = True
            return
        routed = self.rt.routed(state)
        if routed is None or flow.response is not None or not flow.live:
            return
        # a site's upload of unknown size (chunked) is read whole, so it can be inspected
        streamed = bool(request.stream) or (
            self.stream_above is not None and size is not None and size > self.stream_above
        )
        headers = header_pairs(request.headers)
        action = pipeline.early(routed, request.path, headers, streamed=streamed)
        if action is not None:
            state["actions"].append(action.to_dict())
            if action.applied:
                request.stream = False  # (answered here: nothing is sent, nothing streamed)
                flow.response = blocked_response(action)
                return
        if streamed:
            request.stream = True

    @guarded
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """A large response streamed to the client (`stream_large_bodies`); one of unknown
        size too, since shopguard cannot decide later as mitmproxy would."""
        if self.stream_above is None or flow.response is None or flow.response.stream:
            return
        size = self._size(flow.request, flow.response)
        if size is None or size < 0 or size > self.stream_above:
            flow.response.stream = True

    @staticmethod
    def _size(request: http.Request, response: http.Response | None = None) -> int | None:
        """The body size the headers announce: None when unknown (chunked), -1 until close."""
        try:
            return expected_http_body_size(request, response)
        except ValueError:
            return 0  # (a malformed length: mitmproxy does not stream those either)

    @guarded
    def request(self, flow: http.HTTPFlow) -> None:
        state = self.rt.state(flow)
        result, self.rt.result = self.rt.result, None
        if state is None or flow.response is not None or not flow.live:
            return  # blocked already: nothing leaves, nothing to edit
        outcome = result[1].outcome if result is not None and result[0] == flow.id else None
        if outcome is None:  # the inspector did not get to it: decide here, not let it pass
            context, routed = self.rt.context(), self.rt.routed(state)
            if context is None or routed is None:
                return  # no configuration or site (any more): nothing to apply
            request = plain_request(flow, context.config.settings.body_cap, state["host"])
            outcome = pipeline.process(context, request, routed).outcome
        if flow.request.stream:  # streamed already (another addon's choice): nothing applies
            late = {"applied": False, "reason": LATE}
            state["actions"].extend({**a.to_dict(), **late} for a in outcome.actions)
            return
        state["actions"].extend(a.to_dict() for a in outcome.actions)
        if state["mode"] != "enforce":
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
        state = self.rt.state(flow)
        result, self.rt.result = self.rt.result, None
        if state is None or flow.websocket is None or "ws" not in state or not flow.live:
            return
        if result is None or result[0] != flow.id:
            return
        message = flow.websocket.messages[-1]
        outcome = result[1].outcome
        state["ws"]["actions"] = [a.to_dict() for a in outcome.actions]
        if state["mode"] != "enforce" or not message.from_client:
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
