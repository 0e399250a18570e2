"""What a flow line says about its findings: whether each value left, and whether a rule acts
on it. The recorder writes it; `report`, `policy suggest` and the live status read it."""

from __future__ import annotations

from typing import Any

from shopguard.engine.location import within


def what_left(
    findings: list[dict[str, Any]], actions: list[dict[str, Any]], sent: bool
) -> list[dict[str, Any]]:
    """The findings, each saying whether its value reached the site (`left`): not when the
    request was blocked or never sent, nor when an applied strip or replace took it out; a
    value the site sent (`set-cookie:`) was `received` instead."""
    stopped = [
        a["target"]
        for a in actions
        if a.get("applied") and a["action"] in ("block", "strip", "replace")
    ]
    whole = not sent or "request" in stopped or "message" in stopped
    marked = []
    for finding in findings:
        location = finding["location"]
        if location.startswith("set-cookie:"):
            marked.append({**finding, "received": True})
            continue
        left = not whole and not any(within(location, target) for target in stopped)
        marked.append({**finding, "left": left})
    return marked


def acted_on(location: str, actions: list[dict[str, Any]]) -> bool:
    """Whether a rule acts on the value at `location`: a block, or an action whose target holds
    it (applied, or in observe mode only reported)."""
    for action in actions:
        target = action.get("target", "")
        if action.get("action") == "block" or (target and within(location, target)):
            return True
    return False


def unhandled(finding: dict[str, Any], actions: list[dict[str, Any]]) -> bool:
    """A value that reached the site while no rule of its policy acts on it."""
    if finding.get("received") or finding.get("left") is False:
        return False
    return not acted_on(str(finding.get("location")), actions)
