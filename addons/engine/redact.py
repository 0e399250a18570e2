"""Redaction: what a site's policy decides for one request, and the request as it would leave.

Pure: a `PlainRequest`, its body as read once and its findings in, an `Outcome` out (actions,
each naming its rule's file:line, plus the edited URL, headers and body). The edits themselves
are the editor's (`editor`), re-signing is `mtop`'s. The proxy applies the outcome in enforce
mode and only logs it in observe mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from shopguard.engine.body import Body
from shopguard.engine.editor import Editor
from shopguard.engine.fakes import replaceable, stand_in
from shopguard.engine.findings import Finding
from shopguard.engine.location import innermost_name, top
from shopguard.engine.memory import urlsplit
from shopguard.engine.mtop import NO_TOKEN, resign
from shopguard.engine.policy import Policy
from shopguard.engine.request import PlainRequest

_DOCUMENTS = frozenset({"document", "iframe", "frame", "embed", "object"})
_STRENGTH = {"log": 0, "replace": 1, "strip": 2, "block": 3}


@dataclass
class Action:
    """One thing the policy does (or, in observe mode, would do) to a request."""

    action: str  # block | strip | replace | resign
    target: str  # "request", or a location like the findings': query:spm, cookie:cna, body:$.ua
    rule: str  # file:line of the rule; "" for what shopguard does by itself (re-signing)
    applied: bool = True
    category: str | None = None
    status: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"action": self.action, "target": self.target, "rule": self.rule}
        data["applied"] = self.applied
        for name in ("category", "status", "reason"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        return data


@dataclass
class Outcome:
    actions: list[Action] = field(default_factory=list)
    block_status: int | None = None  # answered locally with this status (enforce)
    url: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None  # the decoded body when it changed; None: as it was
    changed: bool = False
    url_changed: bool = False


def block_status(headers: Sequence[tuple[str, str]]) -> int:
    """403 with a page for documents, 204 for beacons, scripts, images and the rest."""
    values = {k.lower(): v for k, v in headers}
    dest = values.get("sec-fetch-dest", "").strip().lower()
    if dest:
        return 403 if dest in _DOCUMENTS else 204
    return 403 if "text/html" in values.get("accept", "").lower() else 204


def tracker_block(
    policy: Policy, host: str, path: str, headers: Sequence[tuple[str, str]], enforce: bool
) -> Action | None:
    """The block action for a tracker host or URL, decided from the request line alone."""
    rule = policy.blocks.find(host, path)
    if rule is None or any(a.everything for a in policy.allowances(host, path)):
        return None
    status = block_status(headers)
    return Action("block", "request", rule.where, enforce, status=status)


def uninspected_block(
    policy: Policy, headers: Sequence[tuple[str, str]], enforce: bool, reason: str
) -> Action | None:
    """The block of a request shopguard could not read, when the site says `on_uninspected:
    block`."""
    if policy.on_uninspected != "block":
        return None
    status = block_status(headers)
    return Action(
        "block", "request", policy.on_uninspected_rule, enforce, status=status, reason=reason
    )


def redact(
    policy: Policy,
    request: PlainRequest,
    body: Body,
    host: str,
    findings: Iterable[Finding],
    *,
    site: str,
    secret: bytes,
    enforce: bool,
    inspection: str = "full",
    region: str = "CN",
) -> Outcome:
    """Apply `policy` to `request` (sent to `host`, its body read as `body`, carrying
    `findings`)."""
    outcome = Outcome(url=request.url, headers=list(request.headers))
    try:
        split = urlsplit(request.url)
    except ValueError:
        return outcome  # a URL Python cannot split: nothing can be edited in it
    path = split.path + (f"?{split.query}" if split.query else "")
    allowances = policy.allowances(host, path)
    if any(a.everything for a in allowances):
        return outcome
    allowed_categories = frozenset().union(*(a.fields or () for a in allowances))
    kept_names = frozenset().union(*(a.keep or () for a in allowances))
    kept = kept_names | {k.lower() for k in kept_names}  # header names ignore case

    # tracker blocks are decided earlier, from the request line (tracker_block)
    block = None
    if inspection != "full":
        reason = f"the request could not be fully inspected ({inspection})"
        block = uninspected_block(policy, request.headers, enforce, reason)
    # what to do with each personal field: the strongest action among its findings
    wanted: dict[str, tuple[str, Finding, str]] = {}
    for finding in findings:
        if finding.location.startswith("set-cookie:"):
            continue  # what a response sets is received, not sent: nothing to act on
        if finding.category in allowed_categories or (
            kept and innermost_name(finding.location) in kept
        ):
            continue
        rule = policy.field_rule(finding.category, host)
        if rule is None or rule.action == "log":
            continue
        if rule.action == "block" and block is None:
            block = Action(
                "block",
                "request",
                rule.where,
                enforce,
                category=finding.category,
                status=block_status(request.headers),
                reason=f"carries {finding.category} ({finding.location})",
            )
        held = wanted.get(finding.location)
        if held is None or _STRENGTH[rule.action] > _STRENGTH[held[0]]:
            wanted[finding.location] = (rule.action, finding, rule.where)
    if block is not None:
        outcome.actions.append(block)
        outcome.block_status = block.status if enforce else None
        return outcome

    editor = Editor(request, split, body)
    for kind, rules in (
        ("query", policy.strip_rules("params", host)),
        ("fragment", policy.strip_rules("params", host)),
        ("cookie", policy.strip_rules("cookies", host)),
        ("header", policy.strip_rules("headers", host)),
    ):
        for name, strip_rule in editor.names(kind, rules, kept):
            target = top(kind, name)
            if editor.strip(target):
                outcome.actions.append(Action("strip", target, strip_rule.where, enforce))
    for target, strip_rule in editor.body_fields(policy.strip_rules("fields", host), kept):
        if editor.strip(target):
            outcome.actions.append(Action("strip", target, strip_rule.where, enforce))
    stripped = {a.target for a in outcome.actions}
    lengths = sorted({len(s) for s in stripped})
    for location, (action, finding, where) in wanted.items():
        if location in stripped or any(
            size < len(location) and location[size] in ".[#" and location[:size] in stripped
            for size in lengths
        ):
            continue  # a tracker rule removed it already (or what holds it)
        done = Action(action, location, where, enforce, category=finding.category)
        if action == "strip":
            problem = None if editor.strip(location) else editor.problem or "cannot edit it"
        elif finding.name is not None:
            problem = "the personal data is the field's name: it can be stripped, not replaced"
        elif not replaceable(finding.transform):
            problem = (
                f"the value is encoded ({finding.transform}); it can be stripped, not replaced"
            )
        else:
            make = partial(
                stand_in,
                category=finding.category,
                transform=finding.transform,
                site=site,
                secret=secret,
                region=region,
            )
            problem = editor.replace(location, finding, make)
        if problem:
            done.applied, done.reason = False, problem
        outcome.actions.append(done)
    _resign(editor, outcome, enforce)
    outcome.changed = editor.changed
    if editor.changed:
        outcome.url, outcome.headers, outcome.body = editor.result()
        outcome.url_changed = outcome.url != request.url
    return outcome


def _resign(editor: Editor, outcome: Outcome, enforce: bool) -> None:
    """A `resign` action when an edit of a signed mtop call's `data` was signed again; the
    edits marked as not done when it could not be."""
    done = resign(editor)
    if done is None:
        return
    if done.signed:
        outcome.actions.append(
            Action("resign", "query:sign", "", enforce, reason="data was edited")
        )
        return
    for action in outcome.actions:
        if action.target == done.field or action.target.startswith(done.field + "."):
            action.applied = False
            action.reason = NO_TOKEN
