"""The filter on mitmproxy's own log records: messages and tracebacks masked, others kept."""

from __future__ import annotations

import logging
import sys

from shopguard.terminal import MaskMitmproxy


def _record(name: str, message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(b"mobile=13800138000")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord(name, logging.WARNING, "x.py", 1, message, args, exc_info)


def test_a_mitmproxy_record_and_its_traceback_are_masked() -> None:
    record = _record("mitmproxy.proxy.server", "Unexpected data: %r", b"13800138000", exc=True)
    assert MaskMitmproxy(lambda: False).filter(record)
    text = logging.Formatter().format(record)
    assert "13800138000" not in text
    assert "Unexpected data" in text and "ValueError" in text  # (what happened stays)


def test_raw_mode_and_shopguards_own_records_are_left_alone() -> None:
    mitm = _record("mitmproxy.proxy.server", "got %s", "13800138000")
    assert MaskMitmproxy(lambda: True).filter(mitm)
    assert mitm.getMessage() == "got 13800138000"
    own = _record("shopguard.inspector", "see %s", "/home/me/profile.yaml")
    assert MaskMitmproxy(lambda: False).filter(own)
    assert own.getMessage() == "see /home/me/profile.yaml"
    web = _record("mitmproxy.tools.web.master", "Web server listening at %s", "http://x/?t=1")
    assert MaskMitmproxy(lambda: False).filter(web)
    assert web.getMessage() == "Web server listening at http://x/?t=1"  # (the user needs it)
