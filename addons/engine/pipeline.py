"""The one way through the engine: a request in; its findings, actions and edited request out.

It also says which site handles the request, and in which mode.

The proxy's addons, `scan`, `policy explain`, `policy test` and the corpus scorer all call it;
only this module calls extraction, detection and redaction. Steps, in order:

1. `route`: which configured site handles the request (and for ad pixels, whose page fired it);
2. `early`: a tracker block or the block of a streamed body, decided from the request line
   alone, before any body byte could leave;
3. `process`: the body read once (`body.read_body`), every field extracted, findings detected,
   the policy applied (`redact`) unless the request is blocked already.
WebSocket messages (`message`) and response cookies (`response_cookies`) take the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import ahocorasick  # type: ignore[import-not-found,unused-ignore]

from shopguard.engine.body import JSON, Body, read_body
from shopguard.engine.detect import Detector
from shopguard.engine.extract import Extraction, Limits, extract, extract_message
from shopguard.engine.findings import Finding
from shopguard.engine.hosts import normalize_host, registrable_domain
from shopguard.engine.hosts import route as route_host
from shopguard.engine.location import escape, masked, with_masks
from shopguard.engine.masking import host_labels, mask_host
from shopguard.engine.memory import urlsplit
from shopguard.engine.redact import Action, Outcome, redact, tracker_block, uninspected_block
from shopguard.engine.request import PlainRequest
from shopguard.engine.settings import Config, Site
from shopguard.engine.trackers import Identifiers, Linker

STREAMED = "its body is streamed and cannot be inspected"


@dataclass
class Context:
    """What the pipeline needs besides the request: the configuration, the detector (with the
    user's profile), what tracking values were seen before, and a mode that overrides every
    site's (the command line's, or `enforce` for `policy explain`)."""

    config: Config
    detector: Detector
    linker: Linker | None = None
    mode: str | None = None

    @cached_property
    def limits(self) -> Limits:
        return Limits(body_cap=self.config.settings.body_cap)


@dataclass
class Routed:
    """The site that handles a request, and where it goes."""

    site: Site
    host: str  # normalised
    via: str | None = None  # for ad pixels: the site whose page fired the request
    third_party: bool = False
    mode: str = "observe"

    @property
    def enforce(self) -> bool:
        return self.mode == "enforce"


@dataclass
class Result:
    """What the pipeline found in a request and what the site's policy does with it."""

    request: PlainRequest
    host: str
    routed: Routed | None = None  # None: no configured site handles it
    inspection: str = "full"
    notes: list[str] = field(default_factory=list)  # why inspection is not full
    findings: list[Finding] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome)
    # names that are themselves personal data, as the log writes them instead (README,
    # *Locations*): raw name -> `{phone:138****8000}`
    masked_names: dict[str, str] = field(default_factory=dict)

    @property
    def site(self) -> Site | None:
        return self.routed.site if self.routed is not None else None


def route(
    config: Config,
    host: str,
    origin: str | None,
    referer: str | None,
    mode: str | None = None,
    last_page: str | None = None,
) -> Routed | None:
    """The configured site that handles a request to `host` (with these Origin and Referer
    headers, and the last marketplace page its client loaded), or None: it is relayed untouched.
    `mode` overrides the site's."""
    host = normalize_host(host)
    routed = route_host(config.host_index(), host, origin, referer, last_page)
    if routed is None:
        return None
    scope, via = routed
    site = config.site(scope.name)
    assert site is not None
    return Routed(site, host, via, not scope.is_first_party(host), config.mode_for(site.name, mode))


def route_request(ctx: Context, request: PlainRequest) -> Routed | None:
    return route(
        ctx.config, request.target, request.header("origin"), request.header("referer"), ctx.mode
    )


def early(
    routed: Routed, path: str, headers: Sequence[tuple[str, str]], streamed: bool = False
) -> Action | None:
    """The block decided from the request line alone (`path` with its query, and the headers):
    a tracker host or URL, or (with `on_uninspected: block`) a body that will be streamed past
    the proxy unseen."""
    policy = routed.site.policy
    action = tracker_block(policy, routed.host, path, headers, routed.enforce)
    if action is None and streamed:
        action = uninspected_block(policy, headers, routed.enforce, STREAMED)
    return action


def process(
    ctx: Context,
    request: PlainRequest,
    routed: Routed | None,
    *,
    blocked: bool = False,
    inspect_unrouted: bool = False,
) -> Result:
    """Findings and actions for `request`. `blocked`: a block was decided already (`early`),
    so the request is only inspected (nothing of it leaves, nothing is edited). A request no site
    handles is inspected only with `inspect_unrouted` (`scan` reports every request of a
    capture)."""
    result = Result(request, routed.host if routed else request.target, routed)
    if routed is None and not inspect_unrouted:
        result.outcome = Outcome(url=request.url, headers=list(request.headers))
        return result
    extraction = extract(request, ctx.limits)
    trackers = routed.site.identifiers if routed is not None else None
    _detect(ctx, result, extraction, trackers)
    if routed is None or blocked:
        result.outcome = Outcome(url=request.url, headers=list(request.headers))
        _mask_names(result)
        return result
    assert extraction.body is not None
    result.outcome = _redact(ctx, routed, request, extraction.body, result)
    _mask_names(result)
    return result


def run(ctx: Context, request: PlainRequest, *, inspect_unrouted: bool = False) -> Result:
    """Every step for one whole request, as the proxy would take them."""
    routed = route_request(ctx, request)
    block = None
    if routed is not None:
        block = early(routed, _path(request.url), request.headers, request.body is None)
    result = process(
        ctx, request, routed, blocked=block is not None, inspect_unrouted=inspect_unrouted
    )
    if block is not None:
        status = block.status if block.applied else None
        result.outcome = Outcome([block], status, request.url, list(request.headers))
    return result


def response_cookies(ctx: Context, routed: Routed, headers: list[tuple[str, str]]) -> list[Finding]:
    """The tracking identifiers a response sets (`set-cookie:…`)."""
    request = PlainRequest("GET", "", (), b"", False, headers)
    extraction = extract(request, ctx.limits)
    party = party_of(routed, routed.host)  # (where the persistent rule sees the cookie set)
    return ctx.detector.detect(extraction, routed.host, routed.site.identifiers, ctx.linker, party)


def message(
    ctx: Context, routed: Routed, url: str, content: bytes | str, from_client: bool
) -> Result:
    """A WebSocket message on the connection opened by `url`. What the client sends is edited
    like a JSON body (its `ws:$…` fields; a `block` drops the message); what the site sends is
    only reported."""
    placeholder = PlainRequest("POST", url, (), b"", host=routed.host)
    result = Result(placeholder, routed.host, routed)
    extraction = extract_message(content, ctx.limits)
    _detect(ctx, result, extraction, routed.site.identifiers)
    try:
        split = urlsplit(url)
    except ValueError:
        split = None
    if not from_client or isinstance(content, str) or split is None:
        _mask_names(result)
        return result
    where = f"{split.scheme}://{split.netloc}{split.path}"  # (its query was sent already)
    as_body = PlainRequest("POST", where, [("content-type", "application/json")], content)
    body = read_body(as_body, ctx.limits.body_cap)
    if body.kind != JSON:  # only JSON messages are edited (README, *What gets logged*)
        _mask_names(result)
        return result
    findings = [
        replace(f, location="body" + f.location[2:]) if f.location.startswith("ws:$") else f
        for f in result.findings
    ]
    outcome = redact(
        routed.site.policy,
        as_body,
        body,
        routed.host,
        findings,
        site=routed.site.name,
        secret=ctx.detector.secret,
        enforce=routed.enforce,
        region=ctx.detector.region,
    )
    for action in outcome.actions:
        if action.target.startswith("body:$"):
            action.target = "ws" + action.target[4:]
        elif action.target == "request":
            action.target = "message"
    result.outcome = outcome
    _mask_names(result)
    return result


def _detect(
    ctx: Context, result: Result, extraction: Extraction, trackers: Identifiers | None
) -> None:
    result.inspection = extraction.inspection
    result.notes = extraction.problems
    result.findings = ctx.detector.detect(
        extraction, result.host, trackers, ctx.linker, party_of(result.routed, result.host)
    )


def shown_host(detector: Detector | None, host: str) -> str:
    """`host` as a line may show it when no request was read (a failed TLS handshake): its
    labels that are personal data (`13800138000.m.example.com`) masked."""
    if detector is None or not any(c.isdigit() or c == "@" for c in host):
        return mask_host(host, ())  # (labels no DNS name has are masked all the same)
    findings = detector.detect(extract(PlainRequest("GET", f"https://{host}/")))
    return mask_host(host, host_labels(f.location for f in findings))


def party_of(routed: Routed | None, host: str) -> str:
    """Who receives a request, for the persistent-identifier rule: the shop itself (its
    `first_party` hosts), or the registrable domain of any other host."""
    if routed is not None and not routed.third_party:
        return f"site:{routed.site.name}"
    return registrable_domain(host)


def _redact(
    ctx: Context, routed: Routed, request: PlainRequest, body: Body, result: Result
) -> Outcome:
    return redact(
        routed.site.policy,
        request,
        body,
        routed.host,
        result.findings,
        site=routed.site.name,
        secret=ctx.detector.secret,
        enforce=routed.enforce,
        inspection=result.inspection,
        region=ctx.detector.region,
    )


def _mask_names(result: Result) -> None:
    """Write a name that is itself personal data masked wherever it appears: in the findings'
    locations and the actions' targets (the editor has used the real ones already)."""
    named = [f for f in result.findings if f.name is not None]
    if not named:
        return
    shown = {f.name: masked(f.category, f.preview) for f in named if f.name is not None}
    masks = {escape(name): text for name, text in shown.items()}
    result.masked_names = shown
    result.findings = [
        replace(f, location=with_masks(f.location, masks), name=None) for f in result.findings
    ]
    quoted = None  # the names, escaped and not, to find those a reason quotes in one pass
    for action in result.outcome.actions:
        action.target = with_masks(action.target, masks)
        if action.reason:  # (reasons quote locations)
            if quoted is None:
                quoted = _needles(shown)
            reason = action.reason
            present = {i for _, i in quoted.iter(reason)} if len(quoted) else set()
            for index, (name, text) in enumerate(shown.items()):
                if index in present:
                    reason = reason.replace(escape(name), text).replace(name, text)
            action.reason = reason


def _needles(names: dict[str, str]) -> ahocorasick.Automaton:
    """An automaton finding each of `names` (as written and escaped): its index in `names`."""
    automaton = ahocorasick.Automaton()
    for index, name in enumerate(names):
        for needle in {name, escape(name)} - {""}:
            automaton.add_word(needle, index)
    if len(automaton):
        automaton.make_automaton()
    return automaton


def _path(url: str) -> str:
    """The path and query of `url` (what block rules match)."""
    try:
        split = urlsplit(url)
    except ValueError:
        return "/"
    return split.path + (f"?{split.query}" if split.query else "")
