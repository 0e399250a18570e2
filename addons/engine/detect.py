"""Detection: extracted fields -> findings, combining known values, patterns and trackers."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate

from shopguard.engine.extract import Extraction, Field
from shopguard.engine.findings import Finding, fingerprint, mask
from shopguard.engine.keys import KeyDictionary, default_dictionary
from shopguard.engine.known_values import KnownMatcher, fold
from shopguard.engine.patterns import Hit, context_hits, geo_hits, text_hits
from shopguard.engine.trackers import Linker, TrackerNames

DEFAULT_MIN_CONFIDENCE = 0.5


@dataclass
class Detector:
    """Turns an extraction into findings; one instance serves every flow of a proxy.

    Shape-only patterns, the known-value automaton and the digest lookup each run once over all
    field values joined by NUL characters (a position maps back to its field), so the cost per
    request is a few passes over its text rather than a few passes per field.
    """

    secret: bytes
    matcher: KnownMatcher | None = None
    region: str = "CN"
    keys: KeyDictionary = field(default_factory=default_dictionary)
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    keep_values: bool = False  # `log.values: raw`

    def detect(
        self,
        extraction: Extraction,
        host: str = "",
        trackers: TrackerNames | None = None,
        linker: Linker | None = None,
    ) -> list[Finding]:
        found: dict[tuple[str, str], Finding] = {}

        def add(fld: Field, detector: str, hit: Hit, transform: str = "", linked: str = "") -> None:
            if hit.confidence < self.min_confidence:
                return
            slot = (hit.category, fld.location)
            if slot in found and found[slot].confidence >= hit.confidence:
                return
            found[slot] = Finding(
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

        # one pass over the fields: tracking identifiers (remembered before the linking below,
        # so that a cookie set and reused in one request links) and key-context detectors
        tracker_locations = trackers.locations if trackers is not None else frozenset()
        tracker_fields: set[int] = set()
        fields: list[Field] = []
        categories: list[frozenset[str]] = []
        categories_of = self.keys.categories_of
        for fld in extraction.fields:
            location = fld.location
            if location in tracker_locations:
                tracker_fields.add(id(fld))
                add(fld, "tracker", Hit("tracking_id", 0.9, fld.value, fld.value))
                if linker is not None and location.startswith(("cookie:", "set-cookie:")):
                    linker.remember(fld.value, f"{location}@{host}" if host else location)
            if location.startswith("set-cookie:"):
                continue  # a response cookie is a tracking identifier or nothing
            cats = categories_of(fld.key, fld.parent)
            if cats:
                for hit in context_hits(fld, cats, self.region):
                    add(fld, "pattern", hit)
            fields.append(fld)
            categories.append(cats)
        text = "\x00".join(f.value for f in fields)
        starts = list(accumulate((len(f.value) + 1 for f in fields[:-1]), initial=0))

        def owner(position: int) -> int:
            return bisect_right(starts, position) - 1

        if linker is not None:
            for token, origin, position in linker.links(text):
                fld = fields[owner(position)]
                if id(fld) not in tracker_fields:
                    add(fld, "tracker", Hit("tracking_id", 0.8, token, token), linked=origin)

        folded = fold(text)
        for position, hit in text_hits(text, self.region, folded):
            add(fields[owner(position)], "pattern", hit)
        if self.matcher is not None:
            self._known(text, folded, fields, categories, owner, add)
        for fld, hit in geo_hits(fields, self.keys):
            add(fld, "pattern", hit)
        return list(found.values())

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
