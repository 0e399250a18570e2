"""The live status line of `shopguard run` on a terminal: per site its flows, those with
personal data, those blocked, and values sent with no rule acting on them."""

from __future__ import annotations

import io

import pytest

from shopguard.cli.run import LiveStatus

PHONE = {"category": "phone", "location": "query:mobile", "left": True}
STOPPED = {"category": "tracking_id", "location": "cookie:cna", "left": False}
BLOCK = {"action": "block", "target": "request", "rule": "t.yaml:3", "applied": True}


def test_the_line_counts_what_the_user_asks_about(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # (the line is cut at the terminal's width)
    out = io.StringIO()
    status = LiveStatus(out)
    status("flow", {"site": "taobao", "findings": [PHONE], "actions": []})
    status("flow", {"site": "taobao", "findings": [STOPPED], "actions": [BLOCK]})
    status("flow", {"site": "third-party-pixels", "via": "jd", "findings": [], "actions": []})
    status("policy_loaded", {"files": []})  # (other lines are not flows)
    assert status.line() == (
        "jd 1 flows, 0 with data, 0 blocked, 0 unhandled | "
        "taobao 2 flows, 2 with data, 1 blocked, 1 unhandled"
    )
    assert out.getvalue().startswith("\r\x1b[2K")  # drawn in place
    status.end()
    assert out.getvalue().endswith(status.line() + "\n")
    monkeypatch.setenv("COLUMNS", "40")
    status.draw()
    assert out.getvalue().endswith("\r\x1b[2K" + status.line()[:39])
