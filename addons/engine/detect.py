"""Detection: extracted fields -> findings, combining known values, patterns and trackers."""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import accumulate, chain, compress
from typing import Any, NamedTuple, cast

import phonenumbers

from shopguard.engine.composite import AGENT_HEADERS, browser_agent
from shopguard.engine.extract import Extraction, Field
from shopguard.engine.findings import Finding, fingerprint, mask
from shopguard.engine.keys import KeyDictionary, default_dictionary, words
from shopguard.engine.known_values import KnownMatcher, fold
from shopguard.engine.memory import Memory, remembered, size_of, sizes
from shopguard.engine.patterns import (
    TEXT_IP,
    Hit,
    context_hits,
    device_shaped,
    geo_hits,
    hardware_shaped,
    packed_ip,
    stamped_id,
    text_hits,
)
from shopguard.engine.trackers import (
    MIN_INSIDE,
    Identifiers,
    Linker,
    inner_tokens,
    persistent_candidate,
)

DEFAULT_MIN_CONFIDENCE = 0.5
_MIB = 1024 * 1024
# what a detector remembers of recurring keys, values, hits, findings and field layouts, in
# bytes (each memory is forgotten whole when full): MEMORY_BYTES in all
_VALUES_BYTES, _CONTEXT_BYTES, _FINDINGS_BYTES, _ROLES_BYTES, _NAMES_BYTES = (
    2 * _MIB,
    _MIB,
    2 * _MIB,
    _MIB,
    _MIB,
)
_LAYOUT_BYTES = 2 * _MIB  # names and locations of the field layouts remembered (one per
# endpoint and site, nearly), and as much for the roles of their keys
MEMORY_BYTES = sum(
    (_VALUES_BYTES, _CONTEXT_BYTES, _FINDINGS_BYTES, _ROLES_BYTES, _NAMES_BYTES, 2 * _LAYOUT_BYTES)
)
_REMEMBER_MAX = 4096  # longer values are scanned each time
_REMEMBER_FIELDS = 500  # values of requests with more fields are not remembered
_NONE: frozenset[str] = frozenset()
_Named = tuple[tuple[str, str, Hit], ...]  # (name, detector, hit): names that are values
_Role = tuple[frozenset[str], str | None, _Named]  # what a key says: categories, coordinate
_PLAIN: _Role = (_NONE, None, ())  # role, and whether it or its parent is personal data itself


class _Layouts(Memory):
    """Facts worked out per field layout, kept within `_LAYOUT_BYTES` of names."""

    def __init__(self) -> None:
        super().__init__(_LAYOUT_BYTES)

    def keep_layout(
        self, memo: tuple[Any, ...], names: Iterable[tuple[str, ...]], facts: Any
    ) -> None:
        # (a request of huge names, over a sixteenth of the bytes, is worked out every time)
        self.keep(memo, facts, sum(size_of(*column) + 8 * len(column) for column in names))


class _Layout(NamedTuple):
    """What the names and places of a request's fields say, whatever their values: one
    endpoint's requests share it, so it is worked out once per site and field layout."""

    trackers: Identifiers | None  # the site's names it was worked out for
    tracked: frozenset[str]  # locations of the fields the site file names
    named: tuple[tuple[int, str], ...]  # (index, category) of those fields
    packed: tuple[tuple[int, int], ...]  # (index, offset) of the names that hold an address
    ignored: frozenset[str]  # locations of session, signing and anti-bot values
    agent: int  # the index of the User-Agent, or -1


_DIGIT = re.compile(r"\d")
_ITEMS = re.compile(r"(?:\[\d+\])+$")
_VALUE_LIKE = re.compile(r"(?:\d\D{0,2}){5}")  # a name with that many digits may be a value
IDENTIFIERS = frozenset({"device_id", "tracking_id"})
# what a key's role says beyond categories: a User-Agent's part; a key that is a postcode next
# to address fields
_AGENT_PART, _NEAR_ADDRESS = "(user-agent part)", "(next to an address)"
_AGENT, _NEAR = frozenset({_AGENT_PART}), frozenset({_NEAR_ADDRESS})
_POSTCODE = frozenset({"postcode"})
_NEVER = ("no candidate",)  # a value the persistent rule never needs to look at
_SHORT = ("too short",)  # a value too short to hold a remembered identifier without a delimiter


_BUILD_WORDS = frozenset({"build", "version", "ver", "sdk", "os", "release", "channel", "model"})
_PLACEHOLDERS = frozenset(
    {"", "-1", "0", "null", "nil", "none", "undefined", "unknown", "not_init", "notinit",
     "default", "n/a", "na", "false", "true", "empty", "anonymous", "guest", "nan"}
)  # fmt: skip
_FILLER = frozenset("-_:.{} ")
_STEPS = frozenset("./[#")


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
    _roles: Memory = field(default_factory=lambda: Memory(_ROLES_BYTES), init=False, repr=False)
    _values: Memory = field(default_factory=lambda: Memory(_VALUES_BYTES), init=False, repr=False)
    _context: Memory = field(default_factory=lambda: Memory(_CONTEXT_BYTES), init=False, repr=False)
    _findings: Memory = field(
        default_factory=lambda: Memory(_FINDINGS_BYTES), init=False, repr=False
    )
    _names: Memory = field(default_factory=lambda: Memory(_NAMES_BYTES), init=False, repr=False)
    _layouts: _Layouts = field(default_factory=_Layouts, init=False, repr=False)
    _role_lists: _Layouts = field(default_factory=_Layouts, init=False, repr=False)

    def detect(
        self,
        extraction: Extraction,
        host: str = "",
        trackers: Identifiers | None = None,
        linker: Linker | None = None,
        party: str = "",
    ) -> list[Finding]:
        """The findings of one request to `host`; `party`, who receives it, or sets the
        cookies of a response (for the persistent-identifier rule: a long value that reaches a
        second party)."""
        found: dict[tuple[str, str, str], Finding] = {}
        made = self._findings
        fields = extraction.fields
        if not fields:
            return []
        # the fields column by column: most of the work below is then done by C loops
        locations, keys, texts, _, parents = zip(*fields, strict=True)
        layout = self._layout(locations, keys, trackers)
        ignored = layout.ignored

        def add(
            fld: Field,
            detector: str,
            hit: Hit,
            transform: str = "",
            linked: str = "",
            named: str = "",
        ) -> None:
            if hit.confidence < self.min_confidence:
                return
            if hit.category in IDENTIFIERS and (
                placeholder(hit.value) or (detector != "profile" and fld.location in ignored)
            ):
                return  # "-1", "NOT_INIT"; a session or signing value the site file names
            if (
                browser
                and hit.category == "device_id"
                and detector != "profile"
                and not hardware_shaped(hit.value)
            ):  # what a page's script calls a device ID is a fingerprint of the browser
                hit = Hit("tracking_id", hit.confidence, hit.value, hit.value)
            location = _named_location(fld, named) if named else fld.location
            slot = (hit.category, location, named)
            if slot in found:  # one of the user's own values is reported as theirs, else the
                before = found[slot]  # surest
                if (before.detector == "profile") != (detector == "profile"):
                    if before.detector == "profile":
                        return
                elif before.confidence >= hit.confidence:
                    return
            key = (hit, location, fld.transform, detector, transform, linked, named)
            finding = made.get(key)
            if finding is None:  # findings are immutable: the same one recurs flow after flow
                finding = Finding(
                    category=hit.category,
                    location=location,
                    detector=detector,
                    transform=">".join(t for t in (fld.transform, transform) if t),
                    confidence=hit.confidence,
                    preview=preview(hit, self.region),
                    fingerprint=fingerprint(self.secret, hit.category, hit.canonical),
                    linked_from=linked or None,
                    value=hit.value if self.keep_values else None,
                    name=named or None,
                )
                made.keep(key, finding, _finding_size(key, finding))
            found[slot] = finding
            if hit.category in IDENTIFIERS:
                made_by[slot] = (fld, detector, hit, transform, linked, named)

        made_by: dict[tuple[str, str, str], tuple[Any, ...]] = {}
        browser = layout.agent >= 0 and browser_agent(texts[layout.agent])
        tracked = layout.tracked
        for index, category in layout.named:  # identifiers by name, remembered before the
            fld = fields[index]  # linking below (so that a cookie set and reused in one
            before = len(found)  # request links)
            add(fld, "tracker", Hit(category, 0.9, fld.value, fld.value))
            if len(found) > before and linker is not None:
                category = next(reversed(found.values())).category
                linker.remember(fld.value, _origin(fld, host), category)
        for index, offset in layout.packed:  # an address held as bytes, or written out
            fld = fields[index]
            if (address := packed_ip(fld.value, offset)) is not None:
                hit = Hit("ip_address", 0.7, address, address)
                add(fld, "pattern", hit, "" if offset == TEXT_IP else "bytes")
        if extraction.response_cookies:  # a response cookie is a tracking identifier or nothing
            for fld in [f for f in fields if f.location[:11] == "set-cookie:"]:
                if fld.location in tracked:
                    continue
                if stamped_id(fld.value):  # `_ttc=3.<r>.<s>`
                    add(fld, "pattern", Hit("tracking_id", 0.8, fld.value, fld.value))
                    if linker is not None:
                        linker.remember(fld.value, _origin(fld, host), "tracking_id")
                elif (  # the persistent rule: a value is seen at the party that sets it (its
                    linker is not None  # echo to another party is then the one reported)
                    and party
                    and fld.location not in ignored
                    and persistent_candidate(fld.value)
                ):
                    linker.sighted(fld.value, party, _origin(fld, host))
            live = [i for i, loc in enumerate(locations) if not loc.startswith("set-cookie:")]
            fields = [fields[i] for i in live]
            if not fields:
                return _most_specific(list(found.values()))
            locations, keys, texts, _, parents = zip(*fields, strict=True)

        role_of, roled = self._roles_of(keys, parents)
        positions: list[tuple[Field, str]] = []  # fields under latitude/longitude/location keys
        near: list[Field] = []  # short keys that are a postcode next to address fields
        context = self._context
        for index in roled:
            (cats, geo_role, named), fld = role_of[index], fields[index]
            for name, detector, hit in named:  # a name that is itself personal data
                add(fld, detector, hit, named=name)
            if _AGENT_PART in cats and device_shaped(fld.value):  # `jdapp;…;;<uuid>;…`
                add(fld, "pattern", Hit("device_id", 0.7, fld.value, fld.value.lower()))
            if _NEAR_ADDRESS in cats:
                near.append(fld)
            if cats:
                hits = context.get((fld.value, cats))
                if hits is None:
                    hits = context_hits(fld, cats, self.region)
                    size = size_of(fld.value, *(t for h in hits for t in (h.value, h.canonical)))
                    context.keep((fld.value, cats), hits, size)
                for hit in hits:
                    add(fld, "pattern", hit)
            if geo_role:
                positions.append((fld, geo_role))
        searched = linker.searched if linker is not None and len(linker) else None
        sighted = linker.sightings_of(party) if linker is not None and party else None
        entries, unclear, tokened, unsearched, unsighted = self._entries(
            texts, len(fields) <= _REMEMBER_FIELDS, searched, sighted
        )
        if searched is not None:  # a tracking value seen first in a cookie
            assert linker is not None
            self._link(fields, texts, entries, tokened, unsearched, tracked, linker, add)
        numbers = self.matcher.numbers if self.matcher is not None else _NONE
        if not numbers.isdisjoint(texts):  # plain numbers are scanned only if they are known
            unclear.extend(i for i, e in enumerate(entries) if e is None and texts[i] in numbers)
            unclear.sort()
        if unclear:
            chosen = [fields[i] for i in unclear]
            for index in self._shapes(chosen, [role_of[i][0] for i in unclear], add):
                entry = entries[unclear[index]]
                if entry is not None:
                    entry[0] = True  # nothing by shape: not scanned again
        for fld, hit in geo_hits(positions):
            add(fld, "pattern", hit)
        if near:  # a postcode by its neighbours (`{"addr": …, "post": "310000"}`)
            pairs = zip(fields, role_of, strict=True)
            addressed = {f.container for f, r in pairs if "address" in r[0]}
            for fld in near:
                if fld.container in addressed:
                    for hit in context_hits(fld, _POSTCODE, self.region):
                        add(fld, "pattern", hit)
        if sighted is not None:
            assert linker is not None
            self._persistent(fields, entries, unsighted, found, host, party, linker, ignored, add)
        if tracked:  # what the site file calls a value wins over what its key suggests
            by_name = {(f.location, f.name) for f in found.values() if f.detector == "tracker"}
            for slot in [s for s, f in found.items() if f.detector == "pattern"]:
                if slot[0] in IDENTIFIERS and (slot[1], slot[2] or None) in by_name:
                    del found[slot]
        if len(made_by) > 1:
            _one_category(found, made_by, add)
        return _most_specific(list(found.values()))

    @staticmethod
    def _persistent(
        fields: list[Field],
        entries: list[list[Any] | None],
        todo: list[int],
        found: dict[tuple[str, str, str], Finding],
        host: str,
        party: str,
        linker: Linker,
        ignored: frozenset[str],
        add: Callable[..., None],
    ) -> None:
        """Identifiers by behaviour: a long, varied value, constant across requests, that has
        reached more than one party is a tracking identifier, named or not (`linked_from` says
        where it was first seen). Values already found to be something are left as they are."""
        if not todo:  # (the values not looked up for this party yet, and maybe candidates)
            return
        taken = {f.location for f in found.values()}
        for index in todo:
            entry, fld = entries[index], fields[index]
            assert entry is not None
            if fld.location in ignored or not persistent_candidate(fld.value):
                # a session or signing value, or no candidate: never one, wherever it goes
                entry[3] = _NEVER
                continue
            if fld.location in taken or fld.location.startswith(
                ("set-cookie:", "header:referer", "header:origin")
            ):
                continue
            first = linker.sighted(fld.value, party, _origin(fld, host))
            if first is None:  # seen at this party and no other: not looked up again for it
                entry[3] = linker.sightings_of(party)
            else:
                add(fld, "tracker", Hit("tracking_id", 0.7, fld.value, fld.value), linked=first)

    def _name_hits(self, name: str) -> _Named:
        """What personal data a key is itself (`?<phone>=1`), nearly always none."""
        if name.isascii() and (len(name) < 5 or name.isalpha()):
            return ()  # too short, or a plain word: not a phone, e-mail, ID or profile value
            # (a name in CJK script, `王小明`, is short and may be the user's)
        shaped = "@" in name or (  # digits or an @: maybe a value
            _DIGIT.search(name) is not None and _VALUE_LIKE.search(name) is not None
        )
        hits: _Named = ()
        if shaped:
            hits = tuple((name, "pattern", hit) for _, hit in text_hits(name, self.region))
        # (a name of several words, `Wang Xiaoming`, may be the user's own in Latin script)
        if self.matcher is not None and (shaped or not name.isascii() or " " in name):
            hits += tuple(
                (name, "profile", Hit(v.category, 0.95, name[start:end], v.canonical))
                for v, start, end in ((m.value, s, e) for m, s, e in self.matcher.find(name))
                # (a postcode only as the whole name: `{"100083": …}`, not inside a longer one)
                if not v.part and (v.category != "postcode" or name == v.canonical)
            )
        if self.matcher is not None and shaped:  # a hashed value as a key (`{"<md5>": …}`)
            hits += tuple(
                (name, "profile", Hit(m.value.category, 0.99, m.value.canonical, m.value.canonical))
                for m, _ in self.matcher.find_digests(name)
            )
        return hits

    def _layout(
        self, locations: tuple[str, ...], keys: tuple[str, ...], trackers: Identifiers | None
    ) -> _Layout:
        """What the site file says about the fields at `locations` under `keys`."""
        memo = (locations, keys, id(trackers))
        layout: _Layout | None = self._layouts.get(memo)
        if layout is not None and layout.trackers is trackers:
            return layout
        tracked: frozenset[str] = _NONE
        named: list[tuple[int, str]] = []
        packed: list[tuple[int, int]] = []
        ignored: frozenset[str] = _NONE
        if trackers is not None:
            by_location, by_key = trackers.by_location, trackers.by_key
            for index, (location, key) in enumerate(zip(locations, keys, strict=True)):
                category = by_location.get(location) or by_key.get(key)
                if category is not None:
                    named.append((index, category))
            tracked = frozenset(locations[i] for i, _ in named)
            offsets = trackers.packed_offsets
            packed = [
                (i, offsets[key])
                for i, key in enumerate(keys)
                if key in offsets and locations[i][:4] != "set-"
            ]
            if trackers.ignored:
                ignores = trackers.ignores
                ignored = frozenset(
                    loc for loc, key in zip(locations, keys, strict=True) if ignores(loc, key)
                )
        agent = locations.index("header:user-agent") if "header:user-agent" in locations else -1
        layout = _Layout(trackers, tracked, tuple(named), tuple(packed), ignored, agent)
        self._layouts.keep_layout(memo, (locations, keys), layout)
        return layout

    def _roles_of(
        self, keys: tuple[str, ...], parents: tuple[str, ...]
    ) -> tuple[list[_Role], list[int]]:
        """What each key says about its value: categories, a coordinate role, and whether the
        key or its parent is itself personal data; and the indexes of the keys that say
        anything. Remembered: a session sends the same keys again and again."""
        memo = (keys, parents)
        known: tuple[list[_Role], list[int]] | None = self._role_lists.get(memo)
        if known is not None:
            return known
        found = self._roles_by_key(keys, parents)
        known = (found, [i for i, role in enumerate(found) if role is not _PLAIN])
        self._role_lists.keep_layout(memo, memo, known)
        return known

    def _roles_by_key(self, keys: tuple[str, ...], parents: tuple[str, ...]) -> list[_Role]:
        roles = self._roles
        found = list(map(roles.get, zip(keys, parents, strict=True)))
        if None in found:
            new = [i for i, role in enumerate(found) if role is None]
            memory = self._names
            names = {
                name: memory.get(name)
                for name in {keys[i] for i in new}.union(parents[i] for i in new)
            }
            unnamed = {name: self._name_hits(name) for name, hits in names.items() if hits is None}
            if unnamed:  # (kept all at once: a request brings many new names, or none)
                names.update(unnamed)
                size = sizes(unnamed) + sum(map(len, unnamed.values())) * 256
                memory.keep_all(unnamed, size)
            named = cast(dict[str, _Named], names)
            made: dict[tuple[str, str], _Role] = {}
            for index in new:
                key, parent = keys[index], parents[index]
                role = (*_key_role(self.keys, key, parent), named[key] + named[parent])
                found[index] = made[(key, parent)] = _PLAIN if role == _PLAIN else role
            size = sizes(chain.from_iterable(made))  # (keys and parents)
            roles.keep_all(made, size + 256 * sum(len(r[2]) for r in made.values() if r[2]))
        return cast(list[_Role], found)

    def _entries(
        self, values: tuple[str, ...], remember: bool, searched: object, sighted: object
    ) -> tuple[
        list[list[Any] | None], list[int], list[tuple[int, frozenset[str]]], list[int], list[int]
    ]:
        """What is known of each value, and the values each later pass must look at, sorted in
        one pass (this runs over every value of every request).

        An entry is [known to hold nothing by shape, the link tokens inside it, under which
        `Linker.searched` it was searched for identifiers inside, under which
        `Linker.sightings_of` it was looked up], or None for a plain number. Returned: the
        entries; the indexes of the values not known to hold nothing; (index, tokens) of those
        with link tokens; the indexes of the values to search under `searched`, and to look up
        under `sighted`. Recurring values are remembered (not those of a product list, where
        nothing recurs: `remember` False)."""
        memory = self._values
        found = list(map(memory.get, values))
        unclear: list[int] = []
        tokened: list[tuple[int, frozenset[str]]] = []
        unsearched: list[int] = []
        unsighted: list[int] = []
        kept: dict[str, list[Any]] = {}
        for index, entry in enumerate(found):
            if entry is None:
                value = values[index]
                size = len(value)
                if value.isdigit() and size < 22 and size != 18:
                    # a plain number: nothing can be in it but one of the profile's numbers (a
                    # phone by shape needs a key or words around it, an ID has 18 characters,
                    # digests at least 22), so it needs no entry
                    continue
                # (a value too short to hold an identifier inside is never searched)
                entry = [False, inner_tokens(value), _SHORT if size <= MIN_INSIDE else None, None]
                found[index] = entry
                if remember and size <= _REMEMBER_MAX:
                    kept[value] = entry
            if not entry[0]:
                unclear.append(index)
            if entry[1]:
                tokened.append((index, entry[1]))
            if entry[2] is not searched and entry[2] is not _SHORT:
                unsearched.append(index)
            if entry[3] is not sighted and entry[3] is not _NEVER:
                unsighted.append(index)
        if kept:  # (the bytes of the values and of their tokens)
            tokens = sum(sizes(e[1]) for e in kept.values() if e[1])
            memory.keep_all(kept, sizes(kept) + tokens)
        return found, unclear, tokened, unsearched, unsighted

    def _link(
        self,
        fields: list[Field],
        values: tuple[str, ...],
        entries: list[list[Any] | None],
        tokened: list[tuple[int, frozenset[str]]],
        todo: list[int],
        tracked: set[str] | frozenset[str],
        linker: Linker,
        add: Callable[..., None],
    ) -> None:
        """Identifiers named by a site file and seen before, reappearing elsewhere: as a whole
        value, as a token inside one (`…&uid=<cna>&…` in a JSON string), or, when long, inside
        a longer value without a delimiter (`<utdid><timestamp><counter>`)."""
        seen = linker.remembered
        inside = frozenset().union(*(tokens for _, tokens in tokened)) if tokened else _NONE
        within_tokens = seen.keys() & inside  # remembered values inside other values
        linked = seen.keys() & set(values) | within_tokens
        # `todo`: the values not searched since this session's last new identifier
        generation = linker.searched
        hits: set[int] = set()
        for position, token in linker.inside(tuple(values[i] for i in todo)):
            index = todo[position]
            hits.add(index)
            if values[index] not in linked and fields[index].location not in tracked:
                hit = Hit(linker.category_of(token), 0.75, token, token)
                add(fields[index], "tracker", hit, linked=seen[token])
        for index in todo:
            if index not in hits:
                entry = entries[index]
                assert entry is not None
                entry[2] = generation
        if not linked:
            return
        whole = list(compress(range(len(values)), map(linked.__contains__, values)))
        within = (
            [i for i, tokens in tokened if not tokens.isdisjoint(within_tokens)]
            if within_tokens
            else []
        )
        for index in sorted(set(whole + within)) if within else whole:
            fld = fields[index]
            if fld.location in tracked:
                continue
            entry = entries[index]
            if fld.value in linked:
                tokens: Iterable[str] = (fld.value,)
            else:
                assert entry is not None
                tokens = sorted(entry[1] & linked)
            for token in tokens:
                hit = Hit(linker.category_of(token), 0.8, token, token)
                add(fld, "tracker", hit, linked=seen[token])

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
            fld = fields[owner(position)]
            if hit.category == "ip_address" and not _ip_by_value(fld, self.keys):
                continue
            add(fld, "pattern", hit)
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
        # a shorter match inside a longer one (a name part inside the e-mail) is not its own.
        # Matches come by start, the longest first: one kept before covers this one if it ends
        # later, or where this one ends but starts before it (`reach`, and the first start of
        # the matches kept that end there)
        reach = reach_start = -1
        for match, start, end in spans:
            if reach > end or (reach == end and reach_start < start):
                continue
            if end > reach:
                reach, reach_start = end, start
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


@remembered(2048)  # (one call where there were three: keys recur a lot)
def _key_role(keys: KeyDictionary, key: str, parent: str) -> tuple[frozenset[str], str | None]:
    """The categories a value under `key` (in `parent`) may be, and its coordinate role."""
    cats = keys.categories_of(key, parent)
    if parent in AGENT_HEADERS and not _BUILD_WORDS.intersection(words(key)):
        cats |= _AGENT  # a part of a User-Agent (not its build or version): a device ID by its
        # shape
    if key and keys.postcode_near_address(key):
        cats |= _NEAR
    return cats, keys.geo_role(key) if key else None


def _finding_size(key: tuple[Any, ...], finding: Finding) -> int:
    """The bytes of a remembered finding and its key (a hit, its location, transforms, names)."""
    hit = key[0]
    strings = (hit.value, hit.canonical, *key[1:], finding.preview, finding.fingerprint)
    return size_of(*strings, finding.value)


def preview(hit: Hit, region: str) -> str:
    """The masked preview of a hit, the same for one value however it was written: a phone
    from its number (national form in the user's region, `138****8000`, else international),
    an e-mail address in lower case."""
    if hit.category == "phone" and hit.canonical.startswith("+"):
        return mask("phone", _phone_display(hit.canonical, region))
    if hit.category == "email":
        return mask("email", hit.canonical)
    return mask(hit.category, hit.value)


@lru_cache(maxsize=1024)  # (E.164 numbers: short)
def _phone_display(e164: str, region: str) -> str:
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    if phonenumbers.region_code_for_number(number) == region:
        return phonenumbers.national_significant_number(number)
    return e164


def _ip_by_value(fld: Field, keys: KeyDictionary) -> bool:
    """Where an address found by its shape alone counts: in a cookie's or a header's value (a
    part of it, JSON in it), or under base64, and not under a key naming a version or a server.
    A plain parameter `v=1.2.3.4` is a version."""
    if not (fld.location.startswith(("cookie:", "header:")) or "base64" in fld.transform):
        return False
    return keys.ip_context_ok(fld.key, fld.parent)


@remembered(2048)
def placeholder(value: str) -> bool:
    """A value that stands for "no identifier": empty, `-1`, `0`, `NOT_INIT`, `null`, all zeros
    (`00000000-0000-…`), one character repeated."""
    compact = value.strip().strip("\"'")
    if compact.lower() in _PLACEHOLDERS:
        return True
    rest = set(compact) - _FILLER
    return len(rest) <= 1


def _one_category(
    found: dict[tuple[str, str, str], Finding],
    made_by: dict[tuple[str, str, str], tuple[Any, ...]],
    add: Callable[..., None],
) -> None:
    """A value that is a device identifier in one place of a request is one wherever else it
    travels in it (Alibaba's apps send the utdid as `x-utdid` and again as `x-umt`)."""
    devices = {args[2].value for slot, args in made_by.items() if slot[0] == "device_id"}
    if not devices:
        return
    for slot, (fld, detector, hit, transform, linked, named) in list(made_by.items()):
        if slot[0] == "tracking_id" and hit.value in devices and found.get(slot) is not None:
            del found[slot]
            device = Hit("device_id", hit.confidence, hit.value, hit.value.lower())
            add(fld, detector, device, transform, linked, named)


def _most_specific(findings: list[Finding]) -> list[Finding]:
    """One value found both in a whole value and in a part of it (the User-Agent, and its
    UTDID product) is reported where it is: at the innermost location."""
    if len(findings) < 2:
        return findings
    seen: dict[tuple[str, str], list[str]] = {}
    for finding in findings:
        seen.setdefault((finding.category, finding.fingerprint), []).append(finding.location)
    outer: set[tuple[str, str, str]] = set()  # (category, fingerprint, location) held deeper
    for (category, print_), locations in seen.items():
        if len(locations) < 2:
            continue
        if len(locations) <= 8:  # (a value found in a few places: compared pairwise)
            outer.update(
                (category, print_, location)
                for location in locations
                if any(
                    len(other) > len(location)
                    and other.startswith(location)
                    and other[len(location)] in _STEPS
                    for other in locations
                )
            )
            continue
        ordered = sorted(locations)  # the locations inside one follow it, in this order
        for location in set(locations):
            for step in _STEPS:
                inner = location + step
                at = bisect_left(ordered, inner)
                if at < len(ordered) and ordered[at].startswith(inner):
                    outer.add((category, print_, location))
                    break
    if not outer:
        return findings
    # a key that is itself the value (`{"<md5 of the e-mail>": {"email": …}}`) is a place of
    # its own, not the whole of its member: it stays, and so its name is masked
    return [
        f
        for f in findings
        if f.name is not None or (f.category, f.fingerprint, f.location) not in outer
    ]


def _origin(fld: Field, host: str) -> str:
    """Where a value was seen, for `linked_from`: `cookie:cna@log.mmstat.com`."""
    return f"{fld.location}@{host}" if host else fld.location


def _named_location(fld: Field, name: str) -> str:
    """Where a name that is itself personal data is: the member it names (a field's own name:
    the field, not an item of it; its parent's name: the enclosing member)."""
    if name == fld.key:
        return _ITEMS.sub("", fld.location)
    cut = max(fld.location.rfind("."), fld.location.rfind(":"))
    return fld.location[:cut] if fld.location[cut] == "." else fld.location
