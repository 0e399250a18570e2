"""Detection: extracted fields -> findings, combining known values, patterns and trackers."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from shopguard.engine.extract import Extraction, Field
from shopguard.engine.findings import Finding, fingerprint, mask
from shopguard.engine.keys import KeyDictionary, default_dictionary
from shopguard.engine.known_values import KnownMatcher, fold
from shopguard.engine.patterns import Hit, context_hits, geo_hits, text_hits
from shopguard.engine.trackers import MIN_LINK, Linker, TrackerNames, link_tokens

DEFAULT_MIN_CONFIDENCE = 0.5
_REMEMBERED = 20_000  # keys, values, hits, findings remembered per detector, then forgotten
_REMEMBER_MAX = 4096  # longer values are scanned each time
_REMEMBER_FIELDS = 500  # values of requests with more fields are not remembered
_NONE: frozenset[str] = frozenset()


def _plain_number(length: int) -> bool:
    """A digits-only value of this length holds a finding only if it is one of the profile's
    numbers: a phone by shape needs a key or words around it, an ID has 18 characters, digests
    at least 22."""
    return length < 22 and length != 18


@dataclass
class Detector:
    """Turns an extraction into findings; one instance serves every flow of a proxy (a new one
    is made when the profile changes).

    Shape-only patterns, the known-value automaton and the digest lookup each run once over the
    values not yet known to hold nothing, joined by NUL characters (a position maps back to its
    field). What recurring keys and values turned out to be is remembered, within bounds: a
    browsing session sends the same cookies, headers and recipient again and again.
    """

    secret: bytes
    matcher: KnownMatcher | None = None
    region: str = "CN"
    keys: KeyDictionary = field(default_factory=default_dictionary)
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    keep_values: bool = False  # `log.values: raw`
    # what recurring keys and values were found to be (a browsing session repeats most of them)
    _roles: dict[tuple[str, str], tuple[frozenset[str], str | None]] = field(
        default_factory=dict, init=False, repr=False
    )
    _values: dict[str, list[Any]] = field(default_factory=dict, init=False, repr=False)
    _context: dict[tuple[str, frozenset[str]], list[Hit]] = field(
        default_factory=dict, init=False, repr=False
    )
    _findings: dict[tuple[Any, ...], Finding] = field(default_factory=dict, init=False, repr=False)

    def detect(
        self,
        extraction: Extraction,
        host: str = "",
        trackers: TrackerNames | None = None,
        linker: Linker | None = None,
    ) -> list[Finding]:
        found: dict[tuple[str, str], Finding] = {}
        made = self._findings

        def add(fld: Field, detector: str, hit: Hit, transform: str = "", linked: str = "") -> None:
            if hit.confidence < self.min_confidence:
                return
            slot = (hit.category, fld.location)
            if slot in found and found[slot].confidence >= hit.confidence:
                return
            key = (hit, fld.location, fld.transform, detector, transform, linked)
            finding = made.get(key)
            if finding is None:  # findings are immutable: the same one recurs flow after flow
                finding = Finding(
                    category=hit.category,
                    location=fld.location,
                    detector=detector,
                    transform=">".join(t for t in (fld.transform, transform) if t),
                    confidence=hit.confidence,
                    preview=mask(hit.category, hit.value),
                    fingerprint=fingerprint(self.secret, hit.category, hit.canonical),
                    linked_from=linked or None,
                    value=hit.value if self.keep_values else None,
                )
                if len(made) > _REMEMBERED:
                    made.clear()
                made[key] = finding
            found[slot] = finding

        # one pass over the fields: tracking identifiers (remembered before the linking below,
        # so that a cookie set and reused in one request links) and key-context detectors
        tracker_locations = trackers.locations if trackers is not None else frozenset()
        fields: list[Field] = []
        categories: list[frozenset[str]] = []
        positions: list[tuple[Field, str]] = []  # fields under latitude/longitude/location keys
        unclear: list[int] = []  # the fields whose values may hold something by shape
        unclear_entries: list[list[Any]] = []
        linkable: list[tuple[Field, frozenset[str]]] = []  # values with tokens to look up
        roles, values, context = self._roles, self._values, self._context
        numbers = self.matcher.numbers if self.matcher is not None else frozenset()
        linking = linker is not None
        bulk = len(extraction.fields) > _REMEMBER_FIELDS  # a product list: nothing recurs
        for fld in extraction.fields:
            location, value = fld.location, fld.value
            tracked = location in tracker_locations
            if tracked:
                add(fld, "tracker", Hit("tracking_id", 0.9, value, value))
                if linker is not None and location.startswith(("cookie:", "set-cookie:")):
                    linker.remember(value, f"{location}@{host}" if host else location)
            if location.startswith("set-cookie:"):
                continue  # a response cookie is a tracking identifier or nothing
            role = roles.get((fld.key, fld.parent))
            if role is None:
                role = roles[(fld.key, fld.parent)] = self._role(fld.key, fld.parent)
            cats, geo_role = role
            if cats:
                hits = context.get((value, cats))
                if hits is None:
                    hits = context_hits(fld, cats, self.region)
                    if len(context) > _REMEMBERED:
                        context.clear()
                    context[(value, cats)] = hits
                for hit in hits:
                    add(fld, "pattern", hit)
            if geo_role:
                positions.append((fld, geo_role))
            entry = values.get(value)  # [known to hold nothing by shape, its link tokens]
            if entry is None:
                entry = [False, None]
                if not bulk and len(value) <= _REMEMBER_MAX:
                    if len(values) > _REMEMBERED:
                        values.clear()
                    values[value] = entry
            if not entry[0] and value.isdigit() and _plain_number(len(value)):
                entry[0] = value not in numbers  # nothing else can be in a plain number
            if not entry[0]:
                unclear.append(len(fields))
                unclear_entries.append(entry)
            if linking:
                tokens = entry[1]
                if tokens is None:
                    tokens = entry[1] = link_tokens(value) if len(value) >= MIN_LINK else _NONE
                if tokens and not tracked:
                    linkable.append((fld, tokens))
            fields.append(fld)
            categories.append(cats)
        if linkable and linker is not None and len(linker):
            seen = linker.remembered
            if seen.keys() & frozenset().union(*(tokens for _, tokens in linkable)):
                for fld, tokens in linkable:  # a tracking value seen first in a cookie
                    for token in tokens:
                        if token in seen:
                            hit = Hit("tracking_id", 0.8, token, token)
                            add(fld, "tracker", hit, linked=seen[token])
        if unclear:
            chosen = [fields[i] for i in unclear]
            for index in self._shapes(chosen, [categories[i] for i in unclear], add):
                unclear_entries[index][0] = True  # nothing by shape: not scanned again
        for fld, hit in geo_hits(positions):
            add(fld, "pattern", hit)
        return list(found.values())

    def _role(self, key: str, parent: str) -> tuple[frozenset[str], str | None]:
        """What a key says about its values: categories, and a coordinate role."""
        if len(self._roles) > _REMEMBERED:
            self._roles.clear()
        return self.keys.categories_of(key, parent), self.keys.geo_role(key) if key else None

    def _shapes(
        self, fields: list[Field], categories: list[frozenset[str]], add: Callable[..., None]
    ) -> list[int]:
        """Patterns, the profile's forms and digests, in one pass each over the values not yet
        known to hold none (joined by NUL: no pattern crosses one). Returns the indexes of the
        values that hold none, to be remembered: a session scans a recurring value once."""
        text = "\x00".join(f.value for f in fields)
        starts = list(accumulate((len(f.value) + 1 for f in fields[:-1]), initial=0))
        matched: set[int] = set()

        def owner(position: int) -> int:
            index = bisect_right(starts, position) - 1
            matched.add(index)
            return index

        folded = fold(text)
        for position, hit in text_hits(text, self.region, folded):
            add(fields[owner(position)], "pattern", hit)
        if self.matcher is not None:
            self._known(text, folded, fields, categories, owner, add)
        return [i for i in range(len(fields)) if i not in matched]

    def _known(
        self,
        text: str,
        folded: str,
        fields: list[Field],
        categories: list[frozenset[str]],
        owner: Callable[[int], int],
        add: Callable[..., None],
    ) -> None:
        assert self.matcher is not None
        spans = sorted(self.matcher.find(text, folded), key=lambda s: (s[1], -(s[2] - s[1])))
        kept: list[tuple[int, int]] = []
        for match, start, end in spans:
            # a shorter match inside a longer one (a name part inside the e-mail) is not its own
            if any(s <= start and end <= e and (e - s) > (end - start) for s, e in kept):
                continue
            kept.append((start, end))
            index = owner(start)
            fld, value = fields[index], match.value
            if value.category == "postcode" and not (
                fld.value.strip().upper().replace(" ", "") == value.canonical
                or "postcode" in categories[index]
            ):
                continue
            hit = Hit(value.category, 0.7 if value.part else 0.95, text[start:end], value.canonical)
            add(fld, "profile", hit)
        for match, start in self.matcher.find_digests(text):
            value = match.value
            hit = Hit(value.category, 0.99, value.canonical, value.canonical)
            add(fields[owner(start)], "profile", hit, transform=match.transform)
