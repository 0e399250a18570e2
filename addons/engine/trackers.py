"""Identifiers: the names a site uses for them, and linking values across requests."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate
from typing import Any

import ahocorasick  # type: ignore[import-not-found,unused-ignore]

from shopguard.engine.location import top
from shopguard.engine.memory import remembered

_TOKENS = re.compile(r"[^\x00&=,;|:/\s\"'{}\[\]]{8,}")  # candidate values, >= MIN_LINK long
MIN_LINK = 8  # shorter tracking values are too likely to recur by chance
MIN_INSIDE = 16  # remembered values found inside longer ones without a delimiter from here on
_NONE: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TrackerNames:
    """Names of one kind of identifier in a site file (`tracking_ids`, `device_ids`, or
    `not_identifiers`): cookies, top-level query or form parameters, request headers, and
    `fields`, the names of JSON members or form fields at any depth (in a JSON body, in JSON
    inside a parameter, in a part of a composite value)."""

    cookies: frozenset[str] = frozenset()
    params: frozenset[str] = frozenset()
    headers: frozenset[str] = frozenset()
    fields: frozenset[str] = frozenset()

    def merged(self, other: TrackerNames) -> TrackerNames:
        return TrackerNames(
            self.cookies | other.cookies,
            self.params | other.params,
            self.headers | other.headers,
            self.fields | other.fields,
        )

    def __bool__(self) -> bool:
        return bool(self.cookies or self.params or self.headers or self.fields)

    @cached_property
    def locations(self) -> frozenset[str]:
        """The field locations that carry them: named cookies, headers and parameters, and the
        `fields` written as a location (`body:$.deviceInfo.id`); other fields match by key."""
        return frozenset(
            [top("cookie", c) for c in self.cookies]
            + [top("set-cookie", c) for c in self.cookies]
            + [top("header", h.lower()) for h in self.headers]
            + [top("query", p) for p in self.params]
            + [top("body.form", p) for p in self.params]
            + [f for f in self.fields if ":" in f]
        )

    @cached_property
    def keys(self) -> frozenset[str]:
        """The `fields` given as names, matched at any depth."""
        return frozenset(f for f in self.fields if ":" not in f)


@dataclass(frozen=True)
class Identifiers:
    """What a site's file says identifies a browser or device, and what never does."""

    tracking: TrackerNames = TrackerNames()
    device: TrackerNames = TrackerNames()
    ignored: TrackerNames = TrackerNames()  # session, signing and anti-bot names
    packed: tuple[tuple[str, int], ...] = ()  # names whose bytes hold an IPv4 address, at offset

    def merged(self, other: Identifiers) -> Identifiers:
        return Identifiers(
            self.tracking.merged(other.tracking),
            self.device.merged(other.device),
            self.ignored.merged(other.ignored),
            self.packed + tuple(p for p in other.packed if p not in self.packed),
        )

    @cached_property
    def packed_offsets(self) -> dict[str, int]:
        return dict(self.packed)

    @cached_property
    def by_location(self) -> dict[str, str]:
        """Field location -> category, for the named cookies, parameters and headers."""
        found = dict.fromkeys(self.tracking.locations, "tracking_id")
        found.update(dict.fromkeys(self.device.locations, "device_id"))
        return found

    @cached_property
    def by_key(self) -> dict[str, str]:
        """Key name -> category, for `fields` (members and fields at any depth), and for the
        named cookies and parameters where they travel inside other values (a click ID in a
        landing URL, `url=…?gclid=…`; a cookie copied into JSON, `cookieParams: {"cna": …}`)."""
        found = dict.fromkeys(
            self.tracking.keys | self.tracking.params | self.tracking.cookies, "tracking_id"
        )
        found.update(
            dict.fromkeys(self.device.keys | self.device.params | self.device.cookies, "device_id")
        )
        return found

    @cached_property
    def ignored_locations(self) -> frozenset[str]:
        return self.ignored.locations

    def ignores(self, location: str, key: str) -> bool:
        """Whether the field at `location` under `key` is a session, signing or anti-bot value
        (never an identifier, by name or by behaviour): the named field, or anything in it but
        a place the site file names as an identifier (the fingerprint part of a signature)."""
        if key and key in self.ignored.keys:
            return True
        return _top_field(location) in self.ignored_locations and location not in self.by_location


@remembered(1024)
def _top_field(location: str) -> str:
    """The top-level field holding what is at `location` (`cookie:a/b.c` -> `cookie:a`)."""
    match = _TOP.match(location)
    return match.group() if match else location


_TOP = re.compile(r"[^:]*:[^.#/\[]*")


SIGHTINGS_BYTES = 8 * 1024 * 1024  # memory for the values of the persistent-identifier rule
_SIGHTING_BYTES = 320  # what one remembered value costs: its key, where it was first, parties
_PARTIES = 4  # parties remembered per value (two are enough to tell)
_MARKS = 4096  # parties whose sightings mark values as looked up
_FEW = 8  # remembered long values searched for one by one (a C search each) up to this many


class Linker:
    """What one browsing session (a proxy run, a capture file) has shown so far: tracking values
    named by a site file, recognised wherever they reappear; and long values, with the parties
    they reached, for the persistent-identifier rule (`sighted`)."""

    def __init__(self, capacity: int = 20_000, sightings_bytes: int = SIGHTINGS_BYTES) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, str] = OrderedDict()
        self._categories: dict[str, str] = {}  # device_id or tracking_id, per remembered value
        self._automaton: Any = None  # the long remembered values, to find them inside others
        self._long: list[str] = []  # the same, when they are few (then searched one by one)
        # stands for the long values remembered now, in memories shared by sessions: a new
        # object when one is added or forgotten (a value searched under it needs no new search)
        self.searched: object = object()
        self._sighted: dict[str, object] = {}  # the same for each party's sightings
        # hash(value) -> (the parties it reached, where it was first seen); values as keyed
        # hashes only, least recently seen forgotten first
        self._sightings: OrderedDict[int, tuple[tuple[str, ...], str]] = OrderedDict()
        self.sightings_capacity = max(sightings_bytes // _SIGHTING_BYTES, 1)

    def sightings_of(self, party: str) -> object:
        """Stands for `party` in this session: a value looked up for it (`sighted`) and found
        nowhere else need not be looked up again for it."""
        mark = self._sighted.get(party)
        if mark is None:
            if len(self._sighted) >= _MARKS:
                self._sighted.clear()  # (then values are looked up once more: no harm)
            mark = self._sighted[party] = object()
        return mark

    def sighted(self, value: str, party: str, origin: str) -> str | None:
        """Record that `value` reached `party` (at `origin`, `location@host`; a cookie the
        party set, `set-cookie:t@host`, counts as reaching it); where it was first seen when it
        has now reached more than one party, else None. The sighting that first brings a value
        to a second party is the first reported: requests before it were logged already.
        Values are kept as their 64-bit string hash, keyed by the process's random hash seed
        (SipHash), never as text."""
        key = hash(value)
        entry = self._sightings.get(key)
        if entry is None:
            self._sightings[key] = ((party,), origin)
            if len(self._sightings) > self.sightings_capacity:
                self._sightings.popitem(last=False)
            return None
        self._sightings.move_to_end(key)
        parties, first = entry
        if party not in parties and len(parties) < _PARTIES:
            parties = (*parties, party)
            self._sightings[key] = (parties, first)
            if len(parties) == 2:  # values marked as seen at one party only may no longer be:
                self._sighted.clear()  # each party's mark is made anew (`sightings_of`)
        return first if len(parties) > 1 else None

    def remember(self, value: str, origin: str, category: str = "tracking_id") -> None:
        """Remember an identifier named by a site file (`origin`: where, `cookie:cna@host`)."""
        if len(value) < MIN_LINK:
            return
        if (
            value[-1] != "="
            and self._seen.get(value) == origin
            and self._categories.get(value) == category
        ):  # the same cookie again
            self._seen.move_to_end(value)
            return
        for form in {value, value.rstrip("=")}:  # base64 padding is split off in text
            if len(form) >= MIN_LINK:
                if form not in self._seen:
                    self._automaton = None  # a new value: the inside-search is built again
                    if len(form) >= MIN_INSIDE:
                        self.searched = object()
                self._seen[form] = origin
                self._categories[form] = category
                self._seen.move_to_end(form)
        while len(self._seen) > self.capacity:
            gone, _ = self._seen.popitem(last=False)
            self._categories.pop(gone, None)
            self._automaton = None
            self.searched = object()

    def category_of(self, value: str) -> str:
        return self._categories.get(value, "tracking_id")

    def inside(self, values: tuple[str, ...]) -> list[tuple[int, str]]:
        """(index, remembered value) for each remembered value of at least `MIN_INSIDE`
        characters found inside one of `values` but not the whole of it (a device ID followed
        by a time and a counter, `<utdid>1700000000000…`): one pass over them all."""
        automaton = self._automaton
        if automaton is None:
            self._long = [form for form in self._seen if len(form) >= MIN_INSIDE]
            automaton = False
            if len(self._long) > _FEW:
                automaton = ahocorasick.Automaton()
                for form in self._long:
                    automaton.add_word(form, form)
                automaton.make_automaton()
            self._automaton = automaton
        if not self._long:
            return []
        long = [i for i, value in enumerate(values) if len(value) > MIN_INSIDE]
        if not long:
            return []
        text = "\x00".join(values[i] for i in long)
        starts = list(accumulate((len(values[i]) + 1 for i in long[:-1]), initial=0))
        found = set()
        if automaton is False:  # a few: each found by the string search, at each place
            ends = [(at + len(form) - 1, form) for form in self._long for at in _places(text, form)]
        else:
            ends = automaton.iter(text)
        for end, token in ends:
            index = long[bisect_right(starts, end) - 1]
            if values[index] != token:
                found.add((index, token))
        return sorted(found)

    def __len__(self) -> int:
        return len(self._seen)

    @property
    def remembered(self) -> Mapping[str, str]:
        """Remembered tracking values and where each was first seen (`cookie:cna@host`)."""
        return self._seen


def _places(text: str, part: str) -> list[int]:
    """Where `part` starts in `text`, each place (as the automaton finds them)."""
    places = []
    at = text.find(part)
    while at >= 0:
        places.append(at)
        at = text.find(part, at + 1)
    return places


def inner_tokens(value: str) -> frozenset[str]:
    """The parts of a value with delimiters that could be remembered tracking values (a value
    without delimiters is one token: itself)."""
    if value.isalnum() or not _DELIMITER.search(value):
        return _NONE
    return frozenset(_TOKENS.findall(value))


_DELIMITER = re.compile(r"[\x00&=,;|:/\s\"'{}\[\]]")


@remembered(2048)
def persistent_candidate(value: str) -> bool:
    """Whether a value can be a persistent identifier (the rule of cookie-syncing research): at
    least 10 characters without spaces or URL parts, varied, mixing letters and digits (or 17
    digits and more: a numeric visitor ID), and not a timestamp."""
    size = len(value)
    if size < 10 or size > 256:
        return False
    if value.isdigit():
        return size >= 17  # (a timestamp has 10 or 13 digits)
    if value.isalpha() or " " in value or "://" in value or len(set(value)) < 6:
        return False
    if len(_PUNCTUATION.findall(value)) > size * 0.4:
        return False
    return _TWO_DIGITS.search(value) is not None and _TWO_LETTERS.search(value) is not None


_PUNCTUATION = re.compile(r"[^0-9A-Za-z]")
_TWO_DIGITS = re.compile(r"\d\D*\d")
_TWO_LETTERS = re.compile(r"[A-Za-z][^A-Za-z]*[A-Za-z]")
