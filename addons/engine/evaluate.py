"""One request through the whole engine, as the proxy would handle it: which site, what it
carries, what the site's policy does to it. Serves `policy explain` and `policy test`."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shopguard.engine.detect import Detector
from shopguard.engine.extract import Limits, PlainRequest, extract
from shopguard.engine.findings import Finding
from shopguard.engine.hosts import normalize_host, route
from shopguard.engine.redact import Outcome, redact, tracker_block
from shopguard.engine.settings import Config, Site


@dataclass
class Evaluation:
    request: PlainRequest
    host: str
    site: Site | None = None
    via: str | None = None  # the site whose page sent it (referred-only sites)
    third_party: bool = False
    mode: str = "observe"
    inspection: str = "full"
    findings: list[Finding] = field(default_factory=list)
    outcome: Outcome | None = None


def evaluate(
    config: Config, request: PlainRequest, detector: Detector, mode: str | None = None
) -> Evaluation:
    """What the proxy would find in `request` and do with it (`mode` overrides the site's)."""
    try:
        split = urlsplit(request.url)
    except ValueError:
        return Evaluation(request, "")  # not a URL any site could be matched with
    host = normalize_host(split.hostname or "")
    result = Evaluation(request, host)
    routed = route(config.host_index(), host, request.header("origin"), request.header("referer"))
    if routed is None:
        return result
    scope, result.via = routed
    site = config.site(scope.name)
    assert site is not None
    result.site, result.third_party = site, not scope.is_first_party(host)
    result.mode = mode or site.mode or config.settings.mode
    extraction = extract(request, Limits(body_cap=config.settings.body_cap))
    result.inspection = extraction.inspection
    result.findings = detector.detect(extraction, host, site.tracking_ids)
    enforce = result.mode == "enforce"
    path = split.path + (f"?{split.query}" if split.query else "")
    block = tracker_block(site.policy, host, path, request.headers, enforce)
    if block is not None:
        result.outcome = Outcome([block], block.status if enforce else None, request.url)
        return result
    result.outcome = redact(
        site.policy,
        request,
        host,
        result.findings,
        site=site.name,
        secret=detector.secret,
        enforce=enforce,
        inspection=extraction.inspection,
        region=detector.region,
    )
    return result
