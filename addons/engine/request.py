"""The request as the engine sees it: plain data, no mitmproxy objects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from shopguard.engine.hosts import host_of_url, normalize_host


@dataclass(frozen=True)
class PlainRequest:
    """A request; `body` None means the body was not available (streamed through unseen)."""

    method: str
    url: str
    headers: Sequence[tuple[str, str]] = ()
    body: bytes | None = b""
    body_truncated: bool = False  # the caller already cut the body (e.g. at body_cap)
    response_headers: Sequence[tuple[str, str]] = ()
    host: str = ""  # where the request goes, when the caller knows it better than the URL

    def header(self, name: str) -> str | None:
        """The first header of that name (any case), or None."""
        return self._first_headers.get(name.lower())

    @cached_property
    def _first_headers(self) -> dict[str, str]:
        first: dict[str, str] = {}
        for name, value in self.headers:
            first.setdefault(name.lower(), value)
        return first

    @cached_property
    def target(self) -> str:
        """The normalised host the request goes to: `host`, else the URL's."""
        if self.host:
            return normalize_host(self.host)
        return host_of_url(self.url) or ""
