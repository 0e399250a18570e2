"""Pattern detectors for values the user never listed: validation plus key-name context.

Every detector here validates (Luhn, MOD 11-2, phone-number metadata, a real top-level domain)
and most also need the key a value travels under to say what it is; that is what keeps an
11-digit item ID from being a phone and a Luhn-valid SKU from being a card.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import phonenumbers

from shopguard.engine.extract import Field
from shopguard.engine.hosts import suffixes
from shopguard.engine.memory import remembered


class Hit(NamedTuple):
    """What a detector found in a value (a tuple: cheap to build, and a key of the detector's
    memory of built findings)."""

    category: str
    confidence: float
    value: str  # as found (masked before it is shown)
    canonical: str  # normalised, for the fingerprint


_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?\.)+[A-Za-z]{2,24})(?![\w-])"
)
# Patterns that run over whole requests start with a literal or a narrow class and leave the
# boundary checks to Python: a leading look-behind would make `re` try every position.
_CN_MOBILE = re.compile(r"1[3-9]\d{9}")
_INTL_PHONE = re.compile(r"\+\d[\d ()-]{6,18}\d(?!\d)")  # and no letter, digit, _ or + before
_PHONE_WORDS = re.compile(r"(?:手机|电话|联系方式|tel|mobile|phone|cell)\W{0,3}$", re.IGNORECASE)
# the birth date inside a resident ID: it starts with a literal (19|20), which `re` finds fast
_CN_ID_DATE = re.compile(r"(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]")
_CN_ID_REGION = re.compile(r"[1-8]\d{5}")
_IMEI = re.compile(r"(?<!\d)\d{15}(?!\d)")
_DIGITS_ONLY = re.compile(r"^\+?[\d\s().-]{6,20}$")
_NUMBER = re.compile(r"^\s*-?\d{1,3}(?:\.\d+)?\s*$")
_PAIR = re.compile(r"^\s*(-?\d{1,3}\.\d{2,})\s*[,;| ]\s*(-?\d{1,3}\.\d{2,})\s*$")
_POSTCODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 -]{2,9}$")
_PLACEHOLDERS = frozenset(
    {"unknown", "null", "undefined", "none", "nil", "default", "test", "true", "false", "0"}
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CARD_PREFIXES = (
    ("4", 13, 19),  # Visa
    ("51", 16, 16), ("52", 16, 16), ("53", 16, 16), ("54", 16, 16), ("55", 16, 16),
    ("2221", 16, 16), ("2720", 16, 16),  # Mastercard 2-series (checked as a range below)
    ("34", 15, 15), ("37", 15, 15),  # American Express
    ("62", 16, 19),  # UnionPay
    ("35", 16, 19),  # JCB
    ("6011", 16, 19), ("65", 16, 19), ("644", 16, 19),  # Discover
    ("36", 14, 19), ("38", 14, 19), ("300", 14, 19),  # Diners
)  # fmt: skip


def luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def cn_id_check(body: str) -> str:
    """The MOD 11-2 check character of a resident ID's first 17 digits (GB 11643)."""
    return "10X98765432"[sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]


def cn_id_valid(text: str) -> bool:
    """MOD 11-2 check character and a real birth date not in the future."""
    if cn_id_check(text[:17]) != text[17].upper():
        return False
    try:
        born = datetime.date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return False
    return datetime.date(1900, 1, 1) <= born <= datetime.date.today()


def card_issuer_ok(digits: str) -> bool:
    if 2221 <= int(digits[:4]) <= 2720:
        return len(digits) == 16
    return any(
        digits.startswith(prefix) and low <= len(digits) <= high
        for prefix, low, high in _CARD_PREFIXES
    )


@remembered(1024)
def email_ok(domain: str) -> bool:
    """A domain under a real public suffix (`2x.png` has none)."""
    return suffixes().publicsuffix(domain.lower(), accept_unknown=False) is not None


@remembered(2048)  # the same numbers recur in request after request
def parse_phone(text: str, region: str) -> str | None:
    """E.164 of a valid phone number written alone in `text`, else None."""
    if not _DIGITS_ONLY.match(text):
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


TIMESTAMP = re.compile(r"1[5-9]\d{8}(?:\d{3})?")  # seconds or milliseconds, 2017 to 2033


def _plausible_identifier(value: str) -> bool:
    compact = value.strip().lower()
    if len(compact) < 8 or compact in _PLACEHOLDERS or TIMESTAMP.fullmatch(compact):
        return False  # (a time, `tmr_lvidTS=1700000000000`, is when, not who)
    distinct = set(compact) - set("-_:. ")
    return len(distinct) >= 4


def context_hits(field: Field, categories: frozenset[str], region: str) -> list[Hit]:
    """What a value is by the categories its key suggests (`receiverMobile`, `zip`, `imei`…)."""
    value = field.value
    stripped = value.strip()
    hits: list[Hit] = []
    if "email" in categories and "@" in value:
        for match in _EMAIL.finditer(value):
            if email_ok(match.group(1)):
                hits.append(Hit("email", 0.95, match.group(0), match.group(0).lower()))
    if "phone" in categories and (e164 := parse_phone(stripped, region)):
        hits.append(Hit("phone", 0.9, stripped, e164))
    if "payment_card" in categories:
        digits = re.sub(r"[\s-]", "", value)
        if digits.isdigit() and 13 <= len(digits) <= 19 and luhn(digits) and card_issuer_ok(digits):
            hits.append(Hit("payment_card", 0.9, stripped, digits))
    if "device_id" in categories and _plausible_identifier(value):
        hits.append(Hit("device_id", 0.8, stripped, stripped.lower()))
    elif "tracking_id" in categories and _plausible_identifier(value):
        hits.append(Hit("tracking_id", 0.75, stripped, stripped))
    if "ip_address" in categories:
        for part in value.split(","):
            if (ip := user_ip(part.strip())) is not None:
                hits.append(Hit("ip_address", 0.9, part.strip(), ip))
    if "name" in categories and _plausible_name(stripped):
        hits.append(Hit("name", 0.75, stripped, stripped.casefold()))
    if "address" in categories and _plausible_address(stripped):
        hits.append(Hit("address", 0.75, stripped, stripped.casefold()))
    if (
        "postcode" in categories
        and _POSTCODE.match(stripped)
        and any(c.isdigit() for c in stripped)
    ):
        hits.append(Hit("postcode", 0.8, stripped, stripped.upper().replace(" ", "")))
    return hits


# the documentation ranges stand for a user's address in examples and fixtures (RFC 5737, 3849)
_DOCUMENTATION = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)
_IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
_IPV6 = re.compile(r"[0-9A-Fa-f]{1,4}:[0-9A-Fa-f:]{2,37}[0-9A-Fa-f]")


@remembered(1024)
def user_ip(text: str) -> str | None:
    """The address, if `text` is an IP address that can be a user's: a public one (or one of
    the documentation ranges). Private, loopback, link-local, shared (CGNAT), multicast and
    reserved addresses, and 0.0.0.0, are a device's own network or nobody's."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.is_global or any(ip in net for net in _DOCUMENTATION if ip.version == net.version):
        return str(ip)
    return None


def _ip_delimiter(char: str) -> bool:
    """What stands around an address written as a value: nothing, a separator or a quote (not a
    letter, digit, `.`, `-`, `_`, or a `/` of a product's version or a URL's host)."""
    return not char or char in "|;,:=&\x00 \t\"'()[]{}<>"


TEXT_IP = -1  # a `packed_ips` entry whose value begins with the address written out
_LEADING_IP = re.compile(r"([0-9A-Fa-f:.]{7,39}?)\.1\d{9,12}(?:\.|$)")  # `<address>.<ms time>…`


@remembered(1024)
def packed_ip(value: str, offset: int) -> str | None:
    """The user's IP address held as four bytes at `offset` in a base64 value, or written out
    at its start before a time (`TEXT_IP`: `198.51.100.23.1678161716466.4`), as a site file's
    `packed_ips` says; or None."""
    if offset == TEXT_IP:
        match = _LEADING_IP.match(value)
        return user_ip(match.group(1)) if match else None
    try:
        raw = base64.b64decode(
            value + "=" * (-len(value) % 4),
            altchars=b"-_" if "-" in value or "_" in value else None,
        )
    except (binascii.Error, ValueError):
        return None
    if len(raw) < offset + 4:
        return None
    return user_ip(".".join(str(b) for b in raw[offset : offset + 4]))


def ip_hits(text: str) -> Iterator[tuple[int, Hit]]:
    """IP addresses by value, anywhere in `text`: a dotted quad not inside a longer run of
    dotted numbers (`11.1.2.3.1700000000000` is no address, nor is a version `1.2.3.4.5`) nor
    after a `/` (`Chrome/120.0.0.0`, a URL's host), or an IPv6 address with two colons or more.
    Keys that name a version or a server are left to the caller."""
    for match in _IPV4.finditer(text):
        start, end = match.start(), match.end()
        before = text[start - 1] if start else ""
        after = text[end] if end < len(text) else ""
        if not (_ip_delimiter(before) and _ip_delimiter(after)):
            continue  # inside a longer token: `v1.2.3.4`, `…-1.0.1.1-…`, `Chrome/1.2.3.4`
        if match.group().endswith((".0", ".255")):
            continue  # a network's or broadcast address, or a version `124.0.0.0`
        if (ip := user_ip(match.group())) is not None:
            yield start, Hit("ip_address", 0.7, match.group(), ip)
    if "::" in text or text.count(":") >= 4:
        for match in _IPV6.finditer(text):
            found = match.group()
            if found.count(":") < 2 or (match.start() and text[match.start() - 1].isalnum()):
                continue
            if (ip := user_ip(found)) is not None:
                yield match.start(), Hit("ip_address", 0.7, found, ip)


_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_HEX_ID = re.compile(r"[0-9A-Fa-f]{16,64}")
_HEX_GROUPS = re.compile(r"[0-9A-Fa-f]{8,32}(?:-[0-9A-Fa-f]{8,32})+")  # `<16 digits>-<16 digits>`
_TOKEN_ID = re.compile(r"[A-Za-z0-9+/_-]{20,64}={0,2}")


# a visitor ID stamped with the time it was made, the format analytics and ad cookies share:
# a version tag, then a random part and a Unix time in either order (Google's `_ga`
# `GA1.2.<random>.<s>` and `_gcl_au` `1.1.<random>.<s>`, Meta's `_fbp` `fb.1.<ms>.<random>`,
# Temu's `_ttc` `3.<random>.<s>`)
_STAMP = re.compile(r"\.1[5-9]\d{8}(?:\d{3})?(?![0-9])")
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_VERSION_TAG = re.compile(r"\d{1,2}|[A-Za-z]{1,3}\d|([A-Za-z]{2,3})")  # group 1: needs a version


def stamped_id(token: str) -> bool:
    """`token` is a visitor ID in the stamped format above (the whole of it)."""
    parts = token.split(".")
    if not 3 <= len(parts) <= 5 or not (tag := _VERSION_TAG.fullmatch(parts[0])):
        return False
    body = parts[1:]
    if len(body[0]) == 1 and body[0].isdigit():  # `GA1.2.`, `fb.1.`, `1.1.`
        body = body[1:]
    elif tag.group(1):
        return False  # a word before a time (`img.1700000000.ab12cd.jpg`) is no version tag
    if len(body) not in (2, 3):
        return False
    for index, stamp in enumerate(body):
        if TIMESTAMP.fullmatch(stamp):
            rest = body[:index] + body[index + 1 :]
            if any(len(p) >= 6 and len(set(p)) >= 4 for p in rest):
                return True
    return False


def _stamped(text: str) -> Iterator[tuple[int, str]]:
    """(offset, token) of the stamped visitor IDs in `text`, each bounded by characters that
    cannot be part of one."""
    end = 0
    for match in _STAMP.finditer(text):
        if match.start() < end:
            continue  # a second time inside the token already looked at
        start, end = match.start(), match.end()
        floor, ceiling = max(0, start - 64), min(len(text), end + 64)
        while start > floor and text[start - 1] in _TOKEN_CHARS:
            start -= 1
        while end < ceiling and text[end] in _TOKEN_CHARS:
            end += 1
        token = text[start:end].strip(".")
        if stamped_id(token):
            start = text.index(token, start)
            yield start, token


@remembered(2048)
def device_shaped(value: str) -> bool:
    """A value shaped like a device identifier: a UUID (IDFA, IDFV, OAID) or hex groups joined
    by `-`, 16 to 64 hex digits (Android ID, an SDK's hashed ID), a 15-digit IMEI with its Luhn
    check, a 20 to 64 character token mixing upper and lower case letters and digits
    (Alibaba's utdid), or one of 32 to 64 lower case letters and digits (JD's iOS uuid).
    Versions, words and dates are none of these."""
    if len(value) < 15 or len(value) > 66:
        return False
    if _UUID.fullmatch(value) or _HEX_GROUPS.fullmatch(value):
        return value.strip("0-") != ""
    if value.isdigit():
        return len(value) == 15 and luhn(value)
    if _HEX_ID.fullmatch(value):
        letters = sum(c.isalpha() for c in value)
        return 2 <= letters < len(value) - 2
    if _TOKEN_ID.fullmatch(value):
        digits = sum(c.isdigit() for c in value)
        if value.isalnum() and value.islower():  # JD's iOS uuid: 40 letters and digits
            return len(value) >= 32 and 4 <= digits <= len(value) - 8
        return any(c.islower() for c in value) and any(c.isupper() for c in value) and digits >= 2
    return False


_MAC = re.compile(r"[0-9A-Fa-f]{2}(?:([:-])[0-9A-Fa-f]{2})(?:\1[0-9A-Fa-f]{2}){4}")


def hardware_shaped(value: str) -> bool:
    """A value in a hardware identifier's own format: a 15-digit IMEI with its Luhn check, or a
    MAC address."""
    if value.isdigit():
        return len(value) == 15 and luhn(value)
    return len(value) == 17 and _MAC.fullmatch(value) is not None


def _alone(text: str, start: int, end: int, alnum: bool = False) -> bool:
    """No digit (or, with `alnum`, no ASCII letter or digit) right before or after the span."""
    for char in (text[start - 1] if start else "", text[end] if end < len(text) else ""):
        if char.isdigit() or (alnum and char.isascii() and char.isalpha()):
            return False
    return True


def _around(text: str, char: str) -> Iterator[tuple[int, str]]:
    """(offset, the NUL-delimited stretch) around each occurrence of a rare character."""
    position = text.find(char)
    while position != -1:
        start = text.rfind("\x00", 0, position) + 1
        end = text.find("\x00", position)
        end = len(text) if end == -1 else end
        yield start, text[start:end]
        position = text.find(char, end)


def _cn_ids(text: str) -> Iterator[tuple[int, str]]:
    """Valid 18-character resident IDs: six region digits before a birth date, then a check."""
    position = 0
    while match := _CN_ID_DATE.search(text, position):
        start = match.start() - 6
        if (
            start >= 0
            and _CN_ID_REGION.fullmatch(text, start, match.start())
            and _alone(text, start, match.end(), alnum=True)
            and cn_id_valid(text[start : match.end()])
        ):
            yield start, text[start : match.end()]
            position = match.end()
        else:
            position = match.start() + 1


def text_hits(text: str, region: str, folded: str | None = None) -> Iterator[tuple[int, Hit]]:
    """(position, hit) for values recognisable by shape alone, anywhere in `text`.

    `text` may be many field values joined by NUL characters; every pattern stops at a NUL.
    `folded` is the text case-folded, when the caller has it.
    """
    for offset, stretch in _around(text, "@"):
        for match in _EMAIL.finditer(stretch):
            if email_ok(match.group(1)):
                address = match.group(0)
                yield offset + match.start(), Hit("email", 0.85, address, address.lower())
    for start, number in _cn_ids(text):
        yield start, Hit("id_number", 0.9, number, number.upper())
    for match in _CN_MOBILE.finditer(text):
        if not _alone(text, match.start(), match.end()):
            continue
        before = text[max(0, match.start() - 12) : match.start()].rpartition("\x00")[2]
        if _PHONE_WORDS.search(before) and (e164 := parse_phone(match.group(0), "CN")):
            yield match.start(), Hit("phone", 0.8, match.group(0), e164)
    for match in _INTL_PHONE.finditer(text):
        before = text[match.start() - 1] if match.start() else ""
        if before and (before.isalnum() or before in "_+"):
            continue
        if e164 := parse_phone(match.group(0), region):
            yield match.start(), Hit("phone", 0.75, match.group(0), e164)
    if "." in text or ":" in text:
        yield from ip_hits(text)
        for start, token in _stamped(text):
            yield start, Hit("tracking_id", 0.8, token, token)
    if "imei" in (text.casefold() if folded is None else folded):
        for match in _IMEI.finditer(text):
            before = text[max(0, match.start() - 12) : match.start()].rpartition("\x00")[2]
            if "imei" in before.lower() and luhn(match.group(0)):
                yield match.start(), Hit("device_id", 0.75, match.group(0), match.group(0))


def _plausible_name(value: str) -> bool:
    if not 2 <= len(value) <= 60 or any(c.isdigit() for c in value):
        return False
    if value.lower() in _PLACEHOLDERS or "@" in value or "/" in value or "=" in value:
        return False
    return any(c.isalpha() for c in value)


def _plausible_address(value: str) -> bool:
    if len(value) < 5 or value.lower() in _PLACEHOLDERS or value.startswith(("http", "{", "[")):
        return False
    letters = sum(c.isalpha() for c in value)
    return letters >= 3 and (len(value) >= 8 or any(c.isdigit() for c in value))


def geo_hits(candidates: Iterable[tuple[Field, str]]) -> Iterator[tuple[Field, Hit]]:
    """Positions: latitude and longitude keys in one object, or "lng,lat" under a location key.

    `candidates` are the fields under coordinate keys with their role (`KeyDictionary.geo_role`).
    """
    by_container: dict[str, dict[str, Field]] = {}
    for field, role in candidates:
        if role == "location":
            match = _PAIR.match(field.value)
            if match and _position(float(match.group(1)), float(match.group(2))):
                yield field, Hit("geo", 0.85, field.value, field.value.strip())
        elif _NUMBER.match(field.value):
            by_container.setdefault(field.container, {}).setdefault(role, field)
    for pair in by_container.values():
        if "lat" in pair and "lng" in pair:
            lat, lng = float(pair["lat"].value), float(pair["lng"].value)
            if -90 <= lat <= 90 and -180 <= lng <= 180 and (lat, lng) != (0.0, 0.0):
                text = f"{pair['lat'].value},{pair['lng'].value}"
                yield pair["lat"], Hit("geo", 0.85, text, text)


def _position(a: float, b: float) -> bool:
    """Either order of a plausible (lng, lat) pair, not (0, 0)."""
    if (a, b) == (0.0, 0.0):
        return False
    return (-180 <= a <= 180 and -90 <= b <= 90) or (-90 <= a <= 90 and -180 <= b <= 180)
