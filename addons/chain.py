"""The shopguard addons in the order mitmproxy must run them."""

from __future__ import annotations

from typing import Any

from shopguard.inspector import Inspector
from shopguard.recorder import Recorder
from shopguard.redactor import Redactor
from shopguard.runtime import Runtime
from shopguard.scope import Scope


def make_addons(rt: Runtime | None = None) -> list[Any]:
    """Scope first (it tags flows), the redactor after the inspector (it acts on the findings),
    the recorder last (it writes what the others decided)."""
    rt = rt or Runtime()
    return [Scope(rt), Inspector(rt), Redactor(rt), Recorder(rt)]
