"""The user's own values (profile.yaml) and the matcher that finds them, in clear or hashed.

Plain forms go into one Aho-Corasick automaton (linear in the text scanned). Hashed forms are
found by digest lookup: md5/sha1/sha224/sha256/sha384/sha512 of every normalised form and of its
lower/upper-case, url-encoded and base64 variants, and hash-of-hash to depth 3, are precomputed
into one dictionary; each hex or base64 token of a digest's length is decoded and looked up.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import ahocorasick  # type: ignore[import-not-found,unused-ignore]
import phonenumbers

from shopguard.engine.located import Checker, ConfigErrors, load_located

PROFILE_CATEGORIES = (
    "name",
    "phone",
    "email",
    "address",
    "postcode",
    "id_number",
    "payment_card",
    "device_id",
)
HASHES = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")
DIGEST_SIZES = frozenset(hashlib.new(h).digest_size for h in HASHES)
_CJK = re.compile(r"[\u3000-\u9fff\uac00-\ud7af]")
_ADMIN_CJK = re.compile(r"^.*?(?:省|自治区|特别行政区|市|自治州|地区|盟|区|县|旗|镇|乡|街道)")


@dataclass(frozen=True)
class KnownValue:
    category: str
    canonical: str  # the normalised whole value: fingerprinted, never logged
    part: bool = False  # a part of a name or address, not the whole


@dataclass(frozen=True)
class Profile:
    default_region: str = "CN"
    values: tuple[KnownValue, ...] = ()
    forms: tuple[tuple[str, int, bool], ...] = ()  # (plain form, index of value, hashable)
    source: str = ""


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip()


def phone_forms(raw: str, region: str) -> tuple[str, list[str]] | None:
    """(E.164, the written forms of one number) or None when it is not a phone number."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    nsn = str(number.national_number)
    cc = str(number.country_code)
    forms = {e164, e164[1:], f"00{cc}{nsn}", nsn, re.sub(r"\D", "", national)}
    for written in (national, international):
        forms.update({written, written.replace(" ", "-"), written.replace(" ", "")})
    return e164, sorted(forms)


def name_forms(name: str) -> list[tuple[str, bool]]:
    """The whole name, reversed Latin order, and parts of >= 2 CJK or >= 3 Latin characters."""
    forms = [(name, False)]
    if _CJK.search(name):
        compact = name.replace(" ", "").replace("·", "")
        if len(compact) >= 3:
            forms.append((compact[1:], True))  # the given name after a one-character surname
        return forms
    tokens = [t for t in re.split(r"[\s·.,]+", name) if t]
    if len(tokens) >= 2:
        forms.append((" ".join(reversed(tokens)), False))
        forms.append(("".join(tokens), False))
    forms += [(t, True) for t in tokens if len(t) >= 3]
    return forms


def address_forms(address: str) -> list[tuple[str, bool]]:
    """The whole address and its street-level parts (never a bare city or district)."""
    forms = [(address, False)]
    if _CJK.search(address):
        street = _ADMIN_CJK.sub("", address, count=1)
        while (shorter := _ADMIN_CJK.sub("", street, count=1)) != street and re.search(
            r"\d", shorter
        ):
            street = shorter
        if street != address and len(street) >= 4:
            forms.append((street, True))
        return forms
    for part in (p.strip() for p in address.split(",")):
        if part != address and re.search(r"\d", part) and len(part) >= 6:
            forms.append((part, True))
    return forms


def normalise(category: str, raw: str, region: str) -> list[tuple[str, str, bool]] | None:
    """[(canonical, form, is_part)] for one profile entry, or None when it is not valid."""
    text = nfkc(raw)
    if not text:
        return None
    if category == "phone":
        found = phone_forms(text, region)
        if found is None:
            return None
        e164, forms = found
        return [(e164, f, False) for f in forms]
    if category == "email":
        lowered = text.casefold()
        return [(lowered, lowered, False)] if "@" in lowered else None
    if category == "name":
        return [(f if part else text, f, part) for f, part in name_forms(text)]
    if category == "address":
        return [(f if part else text, f, part) for f, part in address_forms(text)]
    if category in ("postcode", "id_number"):
        compact = re.sub(r"\s", "", text).upper()
        return [(compact, compact, False)]
    if category == "payment_card":
        digits = re.sub(r"[\s-]", "", text)
        if not digits.isdigit():
            return None
        groups = " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))
        return [(digits, f, False) for f in (digits, groups, groups.replace(" ", "-"))]
    if category == "device_id":
        ids = {text, text.replace("-", "")}
        return [(text.casefold(), f, False) for f in sorted(ids)]
    return None


def load_profile(path: Path) -> Profile:
    """Read and validate a profile file; raises ConfigErrors (file:line: key: message)."""
    private = ("default_region", *PROFILE_CATEGORIES)  # (the only names its errors show)
    doc, errors = load_located(path, private=private)
    if doc is None:
        raise ConfigErrors(errors)
    check = Checker(str(path), private=private)
    entries = check.mapping(doc, ("default_region", *PROFILE_CATEGORIES)) or {}
    region = "CN"
    if "default_region" in entries:
        value = check.scalar(entries["default_region"], str)
        if value is not None and value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            check.error(entries["default_region"], "expected a region code like CN")
        elif value is not None:
            region = value.upper()
    values: list[KnownValue] = []
    forms: list[tuple[str, int, bool]] = []
    for category in PROFILE_CATEGORIES:
        if category not in entries or entries[category].value is None:
            continue
        for item in check.items(entries[category]):
            raw = item.value
            if isinstance(raw, int) and not isinstance(raw, bool):
                raw = str(raw)
            if not isinstance(raw, str):
                check.error(item, f"expected text, got {check.describe(raw)}")
                continue
            normalised = normalise(category, raw, region)
            if normalised is None:
                check.error(item, f"not a valid {category.replace('_', ' ')}")
                continue
            whole_index = len(values)
            values.append(KnownValue(category, normalised[0][0]))
            for canonical, form, part in normalised:
                index = whole_index
                if part:
                    index = len(values)
                    values.append(KnownValue(category, canonical, part=True))
                forms.append((form, index, not part))
    errors.extend(check.errors)
    if errors:
        raise ConfigErrors(errors)
    return Profile(region, tuple(values), tuple(forms), str(path))


@dataclass(frozen=True)
class Match:
    value: KnownValue
    transform: str  # "" for plain text, else the hash chain: "sha256(lower)"


@dataclass
class KnownMatcher:
    """Finds a profile's values in text: plain forms by automaton, hashes by digest lookup."""

    profile: Profile
    automaton: ahocorasick.Automaton = field(init=False)
    digests: dict[bytes, tuple[int, str]] = field(init=False, default_factory=dict)
    numbers: frozenset[str] = field(init=False, default=frozenset())

    def __post_init__(self) -> None:
        self.automaton = ahocorasick.Automaton()
        entries: dict[str, list[int]] = {}
        for form, index, _ in self.profile.forms:
            entries.setdefault(form.casefold(), []).append(index)
        self.numbers = frozenset(n for n in entries if n.isdigit())  # digit needles
        for needle, indexes in entries.items():
            self.automaton.add_word(needle, (needle, tuple(indexes)))
        if entries:
            self.automaton.make_automaton()
        for form, index, hashable in self.profile.forms:
            if hashable:
                self._add_digests(form, index)

    @property
    def pool_size(self) -> int:
        return len(self.digests)

    def _add_digests(self, form: str, index: int) -> None:
        variants = {
            "": form,
            "lower": form.lower(),
            "upper": form.upper(),
            "urlencode": quote(form, safe=""),
            "urlencode(lower)": quote(form.lower(), safe=""),
            "base64": base64.b64encode(form.encode()).decode(),
            "base64(lower)": base64.b64encode(form.lower().encode()).decode(),
        }
        seen: set[str] = set()
        for label, text in variants.items():
            if text in seen:
                continue
            seen.add(text)
            layer = [(text.encode(), label)]
            for depth in range(3):  # hash, hash of hash, hash of hash of hash (hex inside)
                deeper = []
                for data, inner in layer:
                    for name in HASHES:
                        digest = hashlib.new(name, data).digest()
                        chain = f"{name}({inner})" if inner else name
                        self.digests.setdefault(digest, (index, chain))
                        if depth < 2:
                            deeper.append((digest.hex().encode(), chain))
                layer = deeper

    def find(self, text: str, folded: str | None = None) -> Iterator[tuple[Match, int, int]]:
        """(match, start, end) of every known plain form in `text` (case-insensitive).

        `folded` is `fold(text)` when the caller already has it.
        """
        if not len(self.automaton):
            return
        if folded is None:
            folded = fold(text)
        for end, (needle, indexes) in self.automaton.iter(folded):
            start = end - len(needle) + 1
            if _bounded(folded, start, end + 1, needle):
                for index in indexes:
                    yield Match(self.profile.values[index], ""), start, end + 1

    def find_digests(self, text: str) -> Iterator[tuple[Match, int]]:
        """(match, position) of known values hashed into hex or base64 tokens of `text`."""
        if not self.digests:
            return
        for run in _TOKEN_RUN.finditer(text):
            token = run.group(0)
            if len(token) in _HEX_LENGTHS and _HEX.fullmatch(token):
                hit = self.digests.get(bytes.fromhex(token))
                if hit:
                    yield Match(self.profile.values[hit[0]], hit[1]), run.start()
                    continue
            if len(token.rstrip("=")) in _B64_LENGTHS:
                raw = _b64_bytes(token)
                hit = self.digests.get(raw) if raw is not None else None
                if hit:
                    yield Match(self.profile.values[hit[0]], f"base64({hit[1]})"), run.start()


# maximal runs of base64/hex characters (no backtracking), then checked for a digest's length
_TOKEN_RUN = re.compile(r"[A-Za-z0-9+/_-]{22,}={0,2}")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_HEX_LENGTHS = frozenset(2 * size for size in DIGEST_SIZES)
_B64_LENGTHS = frozenset(
    n for size in DIGEST_SIZES for n in ((size + 2) // 3 * 4, -(-size * 4 // 3))
)


def _b64_bytes(token: str) -> bytes | None:
    stripped = token.rstrip("=")
    padded = stripped + "=" * (-len(stripped) % 4)
    try:
        if "-" in padded or "_" in padded:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def fold(text: str) -> str:
    """`text` case-folded, position for position (a fold that changes lengths, ß, is skipped)."""
    folded = text.casefold()
    if len(folded) != len(text):
        folded = "".join(ch if len(ch.casefold()) != 1 else ch.casefold() for ch in text)
    return folded


def _bounded(text: str, start: int, end: int, needle: str) -> bool:
    """Digits must not continue a digit needle; letters must not continue a Latin word."""
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    if (needle[:1].isdigit() and before.isdigit()) or (needle[-1:].isdigit() and after.isdigit()):
        return False
    if needle[:1].isascii() and needle[:1].isalpha() and before.isascii() and before.isalpha():
        return False
    return not (
        needle[-1:].isascii() and needle[-1:].isalpha() and after.isascii() and after.isalpha()
    )
