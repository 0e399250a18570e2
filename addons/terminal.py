"""What mitmproxy itself prints (terminal, mitmweb's event log) holds no request bytes.

mitmproxy logs protocol errors, unexpected server data and crashes with the bytes involved
(`illegal chunk header: bytearray(b'mobile=13800138000…')`); its records pass through one
filter on every handler of the root logger, which masks them as the audit log's errors are.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

from shopguard.engine.masking import mask_message

LIMIT = 2000  # (a traceback stays readable; a flood of bytes does not reach the terminal)
# the loggers that write what connections carry: per-connection messages (protocol errors,
# unexpected data, crashes) and addon errors; start-up lines (where mitmproxy and its web UI
# listen, with the UI's token) are left as they are
CARRIERS = ("mitmproxy.proxy.server", "mitmproxy.proxy.layers", "mitmproxy.addon")


class MaskMitmproxy(logging.Filter):
    """Masks the message (and traceback) of every record of mitmproxy's connection loggers."""

    def __init__(self, raw: Callable[[], bool]) -> None:
        super().__init__()
        self.raw = raw  # `log.values: raw`: the user asked for values in clear

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(CARRIERS) or getattr(record, "shopguard_masked", False):
            return True
        if self.raw():
            return True
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        record.msg, record.args = mask_message(text, LIMIT), None
        record.exc_info, record.exc_text = None, None
        record.shopguard_masked = True  # (once, however many handlers it passes)
        return True


def install(mask: MaskMitmproxy) -> None:
    """Puts `mask` on every handler of the root logger (mitmproxy's terminal and event log)."""
    for handler in logging.getLogger().handlers:
        if mask not in handler.filters:
            handler.addFilter(mask)


def uninstall(mask: MaskMitmproxy) -> None:
    for handler in logging.getLogger().handlers:
        handler.removeFilter(mask)
