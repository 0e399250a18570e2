"""Tracking identifiers: the names a site uses for them, and linking values across requests."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from shopguard.engine.location import top

_TOKENS = re.compile(r"[^\x00&=,;|:/\s\"'{}\[\]]{8,}")  # candidate values, >= MIN_LINK long
MIN_LINK = 8  # shorter tracking values are too likely to recur by chance
_NONE: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TrackerNames:
    """A site's tracking identifiers (site file `tracking_ids`)."""

    cookies: frozenset[str] = frozenset()
    params: frozenset[str] = frozenset()
    headers: frozenset[str] = frozenset()

    def merged(self, other: TrackerNames) -> TrackerNames:
        return TrackerNames(
            self.cookies | other.cookies, self.params | other.params, self.headers | other.headers
        )

    @cached_property
    def locations(self) -> frozenset[str]:
        """The field locations that carry them (top-level parameters only, not nested JSON)."""
        return frozenset(
            [top("cookie", c) for c in self.cookies]
            + [top("set-cookie", c) for c in self.cookies]
            + [top("header", h.lower()) for h in self.headers]
            + [top("query", p) for p in self.params]
            + [top("body.form", p) for p in self.params]
        )


class Linker:
    """Remembers tracking-cookie values so that they are recognised wherever they reappear."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, str] = OrderedDict()

    def remember(self, value: str, origin: str) -> None:
        if len(value) < MIN_LINK:
            return
        for form in {value, value.rstrip("=")}:  # base64 padding is split off in text
            if len(form) >= MIN_LINK:
                self._seen[form] = origin
                self._seen.move_to_end(form)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)

    @property
    def remembered(self) -> Mapping[str, str]:
        """Remembered tracking values and where each was first seen (`cookie:cna@host`)."""
        return self._seen


def inner_tokens(value: str) -> frozenset[str]:
    """The parts of a value with delimiters that could be remembered tracking values (a value
    without delimiters is one token: itself)."""
    if value.isalnum() or not _DELIMITER.search(value):
        return _NONE
    return frozenset(_TOKENS.findall(value))


_DELIMITER = re.compile(r"[\x00&=,;|:/\s\"'{}\[\]]")
