"""Replacement values for personal data: fakes that pass format checks but belong to nobody.

`fake(category, value, site=…, secret=…)` returns a value of the same shape as `value` (length,
character classes, separators) taken from ranges set aside for fiction, testing or documentation
where such ranges exist, or derived with a keyed hash where a value only has to look random.
Everything is deterministic: the same (category, value, site, secret, region) always gives the same
fake, and no state is kept. `site` is part of every derivation, so a device or tracking ID gets a
different fake on every site (unlinkable across sites) and the same one on each visit to a site.

Sources of the reserved ranges:

- Phone numbers, see `_PHONE_RANGES`, `_NANP_*` and `_CN_SMS_CENTRES`.
- Payment cards: the test numbers the networks' acquirers publish for sandboxes (Stripe "Testing",
  Adyen/Braintree/PayPal test card lists); live systems decline them.
- E-mail: `example.com`, reserved by RFC 2606 section 3.
- IP addresses: TEST-NET-1/2/3 (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, RFC 5737) and the
  IPv6 documentation prefix 2001:db8::/32 (RFC 3849).
- Resident IDs: GB/T 11643-1999 (structure and MOD 11-2 check) and GB/T 2260 (region codes).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import re
import string
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from shopguard.engine import decode
from shopguard.engine.patterns import cn_id_check, luhn

__all__ = ["fake", "stand_in"]
_HASHED = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")

_PERSON = b"shopguard.fake.1"  # BLAKE2b personalisation (at most 16 bytes): a new one re-keys all
_MAX_LEN = {
    "phone": 64,
    "email": 320,
    "name": 200,
    "address": 1000,
    "postcode": 16,
    "id_number": 32,
    "payment_card": 40,
    "geo": 80,
    "device_id": 4096,
    "tracking_id": 4096,
    "ip_address": 64,
}
_DIGITS = "0123456789"
_LOWER_HEX = "0123456789abcdef"
_UPPER_HEX = "0123456789ABCDEF"
_B64 = string.ascii_uppercase + string.ascii_lowercase + _DIGITS + "+/"


class _Draw:
    """A deterministic stream of choices, keyed by the secret and seeded by what it replaces."""

    def __init__(self, secret: bytes, parts: Sequence[str]) -> None:
        seed = "\x00".join(parts).encode("utf-8", "surrogatepass")
        self._root = hashlib.blake2b(seed, key=bytes(secret[:64]), person=_PERSON).digest()
        self._block = 0
        self._buffer = b""

    def _take(self, count: int) -> bytes:
        while len(self._buffer) < count:
            block = self._block.to_bytes(8, "big")
            self._buffer += hashlib.blake2b(block, key=self._root, person=_PERSON).digest()
            self._block += 1
        out, self._buffer = self._buffer[:count], self._buffer[count:]
        return out

    def index(self, size: int) -> int:
        """A number in range(size); 40 bits make the modulo bias negligible."""
        return int.from_bytes(self._take(5), "big") % size

    def choice(self, options: Sequence[str]) -> str:
        return options[self.index(len(options))]

    def digits(self, count: int) -> str:
        return "".join(self.choice(_DIGITS) for _ in range(count))


@dataclass(frozen=True)
class _Context:
    category: str
    site: str
    region: str
    secret: bytes

    def draw(self, *parts: str) -> _Draw:
        return _Draw(self.secret, (self.category, self.site, self.region, *parts))


def fake(category: str, value: str, *, site: str, secret: bytes, region: str = "CN") -> str | None:
    """A replacement for `value` (a personal value of `category`) or None when there is none."""
    try:
        handler = _HANDLERS.get(category)
        if handler is None or not isinstance(value, str) or len(value) > _MAX_LEN[category]:
            return None
        if not value.strip():
            return None
        context = _Context(category, site.strip().lower(), region.strip().upper(), bytes(secret))
        result = handler(value, context)
    except Exception:  # a replacement must never break the request it is rewriting
        return None
    return None if result is None or result == value else result


def replaceable(transform: str) -> bool:
    """Whether a value found under `transform` can be replaced in place: plain, percent-encoded
    or a digest (replaced by another digest of its shape); base64 or hex cannot."""
    return not transform or all(
        layer == "urlencode" or layer.startswith(_HASHED) for layer in transform.split(">")
    )


def stand_in(
    current: str, category: str, transform: str, *, site: str, secret: bytes, region: str
) -> str | None:
    """A stand-in for a value as it was found under `transform` (percent-encoded, or a digest:
    of its shape); None when it has none (not a valid one of its category)."""
    layers = transform.split(">") if transform else []
    if layers and layers[-1].startswith(_HASHED):  # a digest: another digest of its shape
        return fake("device_id", current, site=site, secret=secret, region=region)
    for _ in layers:  # percent-encoded again inside the value
        current = decode.unquote(current)
    value = fake(category, current, site=site, secret=secret, region=region)
    for _ in layers:
        value = quote(value, safe="") if value is not None else None
    return value


def _split_space(value: str) -> tuple[str, str, str]:
    core = value.strip()
    start = value.find(core)
    return value[:start], core, value[start + len(core) :]


def _fill(template: str, digits: str) -> str:
    """`template` with its digits replaced in order by `digits`, each in its own script (０-９)."""
    source = iter(digits)
    return "".join(
        chr(ord(char) - unicodedata.decimal(char) + int(next(source))) if char.isdecimal() else char
        for char in template
    )


def _decimal_digits(text: str) -> str:
    """The digits of `text`, any script, as ASCII."""
    return "".join(str(unicodedata.decimal(char)) for char in text if char.isdecimal())


def _luhn_complete(body: str) -> str:
    """`body` followed by the Luhn check digit that makes it valid."""
    return next(body + d for d in _DIGITS if luhn(body + d))


# --- phone ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Range:
    """National significant numbers `prefix` + free digits, `length` digits in all."""

    prefix: str
    length: int
    mobile: bool
    low: int = 0  # the smallest value of the free digits
    strict: bool = True  # whether libphonenumber accepts the range as valid


def _fixed(*prefixes: str, length: int) -> tuple[_Range, ...]:
    return tuple(_Range(prefix, length, mobile=False) for prefix in prefixes)


# ACMA, "Phone numbers for use in TV shows, films and creative works": 30 mobile numbers
# 0491 57x xxx, and (0x) 5550 xxxx / (0x) 7010 xxxx in each geographic area 02, 03, 07 and 08.
_AU_MOBILES = (
    "570006", "570156", "570157", "570158", "570159", "570110", "570313", "570737", "571266",
    "571491", "571804", "572549", "572665", "572983", "573770", "573087", "574118", "574632",
    "575254", "575789", "576398", "576801", "577426", "577644", "578957", "578148", "578888",
    "579212", "579760", "579455",
)  # fmt: skip
# Ranges regulators keep out of service for drama and fiction, as national significant numbers
# (no trunk 0). Every range whose `strict` is True is also valid in libphonenumber's metadata,
# which is what most sites validate with; where the regulator's own range for a kind (mobile or
# fixed) is deliberately left invalid in that metadata, the other kind is used instead, because
# "still validates" matters more than keeping mobile for mobile (see `_fiction_nsn`).
_PHONE_RANGES: dict[str, tuple[_Range, ...]] = {
    # Ofcom, "Telephone numbers for use in TV and radio drama"
    # (ofcom.org.uk/phones-and-broadband/phone-numbers/numbers-for-drama): 1,000 numbers each in
    # Leeds 0113 496 0xxx, Sheffield 0114, Leicester 0116, Bristol 0117, Reading 0118, Birmingham
    # 0121, Edinburgh 0131, Glasgow 0141, Liverpool 0151, Manchester 0161 (all 496 0xxx), London
    # 020 7946 0xxx, Tyneside 0191 498 0xxx, Northern Ireland 028 9018 0xxx, Cardiff 029 2018 0xxx.
    # Left out because libphonenumber rejects them (google/libphonenumber issues #341, #1768,
    # #1948): the mobile range 07700 900xxx, the no-area range 01632 960xxx and Nottingham
    # 0115 496 0xxx.
    "GB": _fixed(
        *(f"{area}4960" for area in ("113", "114", "116", "117", "118", "121", "131", "141")),
        *("1514960", "1614960", "2079460", "1914980", "2890180", "2920180"),
        length=10,
    ),
    # ComReg 08/04, "Numbering Conventions": 020 91x xxxx is kept for drama. It is the only Irish
    # range and libphonenumber does not know it (issue #1936), so it is used as a merely
    # *possible* number: better a fake a strict check rejects than a number that may ring.
    "IE": (_Range("2091", 9, mobile=False, strict=False),),
    # ACMA: see `_AU_MOBILES`.
    "AU": (
        *(_Range(f"491{number}", 9, mobile=True) for number in _AU_MOBILES),
        *_fixed(*(f"{area}{block}" for area in "2378" for block in ("5550", "7010")), length=9),
    ),
    # ARCEP, plan national de numérotation: blocks for audiovisual fiction 01 99 00, 02 61 91,
    # 03 53 01, 04 65 71, 05 36 49 (xx xx). The mobile block 06 39 98 xx xx is left out because
    # libphonenumber rejects it.
    "FR": _fixed("19900", "26191", "35301", "46571", "53649", length=9),
    # Bundesnetzagentur, "Rufnummern für Medienproduktionen (Drama Numbers)", Mitteilung 148/2021
    # (Amtsblatt 7/2021): 1,000 numbers each in Berlin 030 23125 xxx, Frankfurt 069 90009 xxx,
    # Hamburg 040 66969 xxx, Köln 0221 4710 xxx and München 089 99998 xxx. The mobile operators'
    # handful of single drama numbers are not used: no primary list of them was at hand.
    "DE": _fixed("3023125", "6990009", "4066969", "2214710", "8999998", length=10),
    # Post- och telestyrelsen (PTS), 2020: 070-174 06 05 to 070-174 06 99 for fiction.
    "SE": (_Range("7017406", 9, mobile=True, low=5),),
}
# NANPA: 555-0100 to 555-0199 are reserved for fictitious use in every geographic area code.
_NANP_FICTION = "55501"
_NANP_GEOGRAPHIC = (
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE,
)
# China has no published range for fiction (none in MIIT's 电信网编号计划 (2017年版), nor anywhere
# else we could find). The least harmful valid mobile numbers are the operators' own SMS-centre
# (短信中心) addresses, published by the operators for handset set-up and written into countless
# modem guides: 中国移动 +86 138 00 <area> 500, 中国联通 +86 130 10 <area> 500. They are network
# elements, never a subscriber's phone, and libphonenumber accepts them as mobile numbers.
_CN_SMS_CENTRES = (
    *("13800100500", "13800210500", "13800220500", "13800230500", "13800240500"),
    *("13800250500", "13800311500", "13800351500", "13800451500", "13800531500"),
    *("13010112500", "13010314500", "13010888500", "13010171500", "13010341500"),
    *("13010360500", "13010380500", "13010811500", "13010831500", "13010180500"),
)
# Chinese fixed lines: a local subscriber number never starts with 1 (the 1 prefix is for special
# services such as 110, 114 and 12345; 全国电话号码编码制度 keeps subscriber numbers to 2-8), yet
# libphonenumber accepts area code + 1[3-9]…, so such a number validates and is nobody's.


def _fiction_nsn(
    number: phonenumbers.PhoneNumber, country: str, draw: _Draw, fits: Callable[[str], bool]
) -> tuple[str, bool] | None:
    """A fictitious national significant number like `number`'s, and whether it must validate.

    Of the country's ranges, those of the same kind (mobile or not) come first, and of those the
    ones whose numbers `fits` (same length and grouping as the original's, so that its spaces and
    hyphens still fall between groups).
    """
    nsn = phonenumbers.national_significant_number(number)
    kind = phonenumbers.number_type(number)
    if number.country_code == 1:
        # toll-free and other non-geographic NANP numbers are nobody's personal line
        if kind not in _NANP_GEOGRAPHIC or len(nsn) != 10:
            return None
        return nsn[:3] + _NANP_FICTION + draw.digits(2), True
    if country == "CN":
        if kind == PhoneNumberType.MOBILE:
            return draw.choice(_CN_SMS_CENTRES), True
        area = phonenumbers.length_of_geographical_area_code(number)
        if kind != PhoneNumberType.FIXED_LINE or not area or len(nsn) - area < 7:
            return None
        return nsn[:area] + "1" + draw.choice("3456789") + draw.digits(len(nsn) - area - 2), True
    ranges = _PHONE_RANGES.get(country)
    if not ranges:
        return None
    mobile = kind == PhoneNumberType.MOBILE
    pool = [r for r in ranges if r.mobile == mobile] or list(ranges)
    pool = [r for r in pool if fits(r.prefix.ljust(r.length, "0"))] or pool
    chosen = pool[draw.index(len(pool))]
    free = chosen.length - len(chosen.prefix)
    if not free:
        return chosen.prefix, chosen.strict
    tail = chosen.low + draw.index(10**free - chosen.low)
    return chosen.prefix + str(tail).zfill(free), chosen.strict


def _phone(value: str, context: _Context) -> str | None:
    try:
        number = phonenumbers.parse(value, context.region or None)
    except phonenumbers.NumberParseException:
        return None
    if number.extension or not phonenumbers.is_possible_number(number):
        return None
    nsn = phonenumbers.national_significant_number(number)
    digits = _decimal_digits(value)
    country = phonenumbers.region_code_for_number(number)
    if not nsn or not country or not digits.endswith(nsn):
        return None  # letters (1-800-FLOWERS) or a carrier code: not worth it
    prefix = digits[: len(digits) - len(nsn)]  # what precedes the number: "", "0", "86", "0086"…
    groups = _groups(value, len(nsn))

    def fits(candidate: str) -> bool:
        if len(candidate) != len(nsn):
            return False
        national = phonenumbers.format_number(
            phonenumbers.parse(f"+{number.country_code}{candidate}"), PhoneNumberFormat.NATIONAL
        )
        return groups <= _groups(national, len(candidate))

    draw = context.draw(value)
    for _ in range(8):
        chosen = _fiction_nsn(number, country, draw, fits)
        if chosen is None:
            return None
        new_nsn, strict = chosen
        if new_nsn == nsn:
            continue
        text = _render_phone(value, prefix, digits, new_nsn, number, fits)
        if text is not None and _phone_ok(text, context.region, new_nsn, country, strict):
            return text
    return None


def _groups(text: str, size: int) -> frozenset[int]:
    """Where separators fall among the last `size` digits of `text`, counted from the end."""
    found, seen, pending = set(), 0, False
    for char in reversed(text):
        if char.isdecimal():
            if pending and seen < size:
                found.add(seen)
            seen, pending = seen + 1, False
        elif seen:
            pending = True
    return frozenset(found)


def _render_phone(
    value: str,
    prefix: str,
    digits: str,
    new_nsn: str,
    number: phonenumbers.PhoneNumber,
    fits: Callable[[str], bool],
) -> str | None:
    """`new_nsn` written the way `value` is: same prefix, separators and grouping."""
    nsn = phonenumbers.national_significant_number(number)
    if len(prefix + new_nsn) == len(digits) and (fits(new_nsn) or not fits(nsn)):
        return _fill(value, prefix + new_nsn)  # the original's grouping, standard or its own
    # A different length (Germany's drama blocks are all 10 digits) or grouping (a mobile number
    # replaced by a fixed one): format it afresh, international or national like the original,
    # with the original's separator.
    lead, core, trail = _split_space(value)
    new = phonenumbers.parse(f"+{number.country_code}{new_nsn}")
    if core.startswith("+"):
        text = phonenumbers.format_number(new, PhoneNumberFormat.INTERNATIONAL)
    elif prefix in ("", "0"):
        text = phonenumbers.format_number(new, PhoneNumberFormat.NATIONAL)
    else:
        return None
    separators = [char for char in core if char in " -./"]
    if separators and " " not in separators:  # "138-0013-8000" style: no spaces
        text = text.replace(" ", separators[0])
    elif not separators:
        text = "".join(char for char in text if char in _DIGITS or char == "+")
    return lead + text + trail


def _phone_ok(text: str, region: str, new_nsn: str, country: str, strict: bool) -> bool:
    try:
        parsed = phonenumbers.parse(text, region or None)
    except phonenumbers.NumberParseException:
        return False
    if phonenumbers.national_significant_number(parsed) != new_nsn:
        return False
    if not strict:
        return phonenumbers.is_possible_number(parsed)
    return (
        phonenumbers.is_valid_number(parsed)
        and phonenumbers.region_code_for_number(parsed) == country
    )


# --- e-mail, IP address ---------------------------------------------------------------------------

_EMAIL = re.compile(r"[^\s@]{1,64}@[^\s@]+\.[^\s@.]+")


def _email(value: str, context: _Context) -> str | None:
    lead, core, trail = _split_space(value)
    if not _EMAIL.fullmatch(core):
        return None
    draw = context.draw(core.lower())  # e-mail addresses are compared case-insensitively
    local = draw.choice(string.ascii_lowercase) + "".join(
        draw.choice(string.ascii_lowercase + _DIGITS) for _ in range(9)
    )
    return f"{lead}{local}@example.com{trail}"


_TEST_NETS = ("192.0.2", "198.51.100", "203.0.113")  # RFC 5737


def _ip_address(value: str, context: _Context) -> str | None:
    lead, core, trail = _split_space(value)
    try:
        address = ipaddress.ip_address(core)
    except ValueError:
        return None
    draw = context.draw(address.compressed)
    for _ in range(4):
        if address.version == 4:
            text = f"{draw.choice(_TEST_NETS)}.{1 + draw.index(254)}"
        else:
            groups = ":".join(f"{draw.index(0x10000):x}" for _ in range(6))
            fake_v6 = ipaddress.IPv6Address(f"2001:db8:{groups}")  # RFC 3849
            text = fake_v6.exploded if "::" not in core and len(core) == 39 else fake_v6.compressed
            if any(char in "ABCDEF" for char in core) and not any(c in "abcdef" for c in core):
                text = text.upper()
        if text != core:
            return lead + text + trail
    return None


# --- payment card ---------------------------------------------------------------------------------

# Networks' sandbox numbers (Stripe, Adyen, Braintree, PayPal test card lists): Luhn-valid, and
# declined by every live system.
_TEST_CARDS: dict[str, tuple[str, ...]] = {
    "visa": ("4111111111111111", "4242424242424242", "4012888888881881", "4222222222222"),
    "mastercard": ("5555555555554444", "5105105105105100", "2223003122003222"),
    "amex": ("378282246310005", "371449635398431"),
    "discover": ("6011111111111117", "6011000990139424"),
    "jcb": ("3530111333300000", "3566002020360505"),
    "diners": ("3056930009020004", "30569309025904", "38520000023237", "36227206271667"),
    "unionpay": ("6200000000000005", "6200000000000047", "6205500000000000004"),
}
_CARD_SHAPE = re.compile(r"\d[\d -]{10,30}\d", re.ASCII)
_CARD_GROUPS = {14: (4, 6, 4), 15: (4, 6, 5)}  # Diners and Amex; the others group by four


def _network(digits: str) -> str | None:
    two, three, four = int(digits[:2]), int(digits[:3]), int(digits[:4])
    if digits[0] == "4":
        return "visa"
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "mastercard"
    if two in (34, 37):
        return "amex"
    if two == 62:
        return "unionpay"
    if four == 6011 or two == 65 or 644 <= three <= 649:
        return "discover"
    if 3528 <= four <= 3589:
        return "jcb"
    if two in (36, 38, 39) or 300 <= three <= 305 or four == 3095:
        return "diners"
    return None


def _payment_card(value: str, context: _Context) -> str | None:
    lead, core, trail = _split_space(value)
    if not _CARD_SHAPE.fullmatch(core):
        return None
    digits = _decimal_digits(core)
    network = _network(digits) if 12 <= len(digits) <= 19 else None
    if network is None:
        return None
    cards = [card for card in _TEST_CARDS[network] if card != digits]
    same_length = [card for card in cards if len(card) == len(digits)]
    same_start = [card for card in same_length if card[0] == digits[0]]
    pool = same_start or same_length or sorted(cards, key=lambda card: len(card) != 16)[:1]
    if not pool:
        return None
    card = context.draw(digits).choice(pool)
    if len(card) == len(digits):
        return lead + _fill(core, card) + trail
    separators = [char for char in core if char in " -"]
    if not separators:
        return lead + card + trail
    groups, start, parts = _CARD_GROUPS.get(len(card), (4,) * 5), 0, []
    for size in groups:
        if start < len(card):
            parts.append(card[start : start + size])
            start += size
    return lead + separators[0].join(parts) + trail


# --- resident ID ----------------------------------------------------------------------------------

_CN_ID = re.compile(r"\d{17}[\dXx]", re.ASCII)
# Province-level codes of GB/T 2260 (mainland only). A resident ID carries the county-level code
# of the place of registration (six digits not ending in 0000), so <province>0000 keeps the form
# and the province lists that client-side validators check, yet is on nobody's ID. 81/82/83 0000
# are left out: the residence permits of Hong Kong, Macao and Taiwan residents really carry them.
_PROVINCES = (
    *("11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37"),
    *("41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64"),
    "65",
)


def _id_number(value: str, context: _Context) -> str | None:
    lead, core, trail = _split_space(value)
    if not _CN_ID.fullmatch(core):
        return None
    draw = context.draw(core.upper())
    try:
        born = datetime.date(int(core[6:10]), int(core[10:12]), int(core[12:14]))
    except ValueError:
        born = datetime.date(1990, 12, 31)
    # The birth year stays (age checks keep passing); month and day are derived, no later than the
    # real ones so that the date is never in the future when the original's was not.
    month = 1 + draw.index(born.month)
    day = 1 + draw.index(born.day if month == born.month else 28)
    # the sequence number's parity is the holder's sex: kept, as forms often cross-check it
    sequence = f"{draw.index(100):02d}{2 * draw.index(5) + int(core[16]) % 2}"
    body = f"{draw.choice(_PROVINCES)}0000{born.year:04d}{month:02d}{day:02d}{sequence}"
    check = cn_id_check(body)
    return lead + body + (check.lower() if core[17] == "x" else check) + trail


# --- device and tracking IDs ----------------------------------------------------------------------

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MAC = re.compile(r"[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(?:\1[0-9a-fA-F]{2}){4}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
_SEGMENT = re.compile(r"[A-Za-z0-9]+")


def _alphabets(value: str) -> list[str]:
    """Per position, the alphabet the replacement character is drawn from ("" keeps it).

    The alphabet belongs to the whole value or to a segment, never to one position: mapping each
    digit to a digit and each letter to a letter inside a hex or base64 value would copy the
    original's digit/letter pattern into every site's fake and make them linkable again.
    """
    alphabets = [""] * len(value)
    body = value.rstrip("=")
    letters = [char for char in value if char.isalpha()]
    if _BASE64.fullmatch(value) and ("+" in body or "/" in body):
        return [_B64] * len(body) + [""] * (len(value) - len(body))
    hexadecimal = all(char in _UPPER_HEX + "abcdef" for char in letters)
    one_case = all(char.islower() for char in letters) or all(char.isupper() for char in letters)
    if "." not in value and letters and hexadecimal and one_case:
        hexes = _LOWER_HEX if letters[0].islower() else _UPPER_HEX
        return [hexes if char.isalnum() else "" for char in value]
    for match in _SEGMENT.finditer(value):
        segment = match.group()
        alphabet = "".join(
            chars
            for chars, present in (
                (_DIGITS, any(c.isdigit() for c in segment)),
                (string.ascii_lowercase, any(c.islower() for c in segment)),
                (string.ascii_uppercase, any(c.isupper() for c in segment)),
            )
            if present
        )
        alphabets[match.start() : match.end()] = [alphabet] * len(segment)
    return alphabets


def _kept(value: str) -> set[int]:
    """Positions copied as they are: format markers every user has, not identifying bits."""
    kept: set[int] = set()
    segments = value.split(".")
    if len(segments) >= 3:  # dotted cookie formats: "GA1.2.", "fb.1.", "GS1.1.", "1.1."
        first, second = segments[0], segments[1]
        nonhex = any(c.isalpha() and c.lower() not in "abcdef" for c in first)
        if len(first) <= 2 or (len(first) <= 4 and nonhex):
            kept.update(range(len(first)))
            if len(second) == 1 and second.isdigit():
                kept.add(len(first) + 1)
        # Unix times (s or ms, 2001-2033) keep their first two digits so they stay plausible
        start = 0
        for segment in segments:
            if segment.isdigit() and len(segment) in (10, 13) and segment[0] == "1":
                kept.update((start, start + 1))
            start += len(segment) + 1
    if _UUID.fullmatch(value):
        kept.add(14)  # the version nibble
    return kept


def _identifier(value: str, context: _Context) -> str | None:
    if not value.isascii() or not value.isprintable() or not any(c.isalnum() for c in value):
        return None
    draw = context.draw(value)
    if value.isdigit() and len(value) == 15 and luhn(value):  # an IMEI stays Luhn-valid
        return _luhn_complete(draw.choice("123456789") + draw.digits(13))
    alphabets, kept = _alphabets(value), _kept(value)
    out = []
    for index, char in enumerate(value):
        alphabet = alphabets[index]
        if not alphabet or index in kept:
            out.append(char)
            continue
        run_start = index == 0 or not value[index - 1].isalnum()
        if alphabet == _DIGITS and run_start and char != "0":
            alphabet = "123456789"  # numbers keep their magnitude
        out.append(draw.choice(alphabet))
    if _UUID.fullmatch(value) and value[19] in "89abAB":  # RFC 9562 variant bits 10xx
        out[19] = draw.choice("89ab" if value[19] in "89ab" else "89AB")
    if _MAC.fullmatch(value):  # a locally administered unicast address: no vendor's, nobody's
        out[1] = draw.choice("26ae" if value.lower() == value else "26AE")
    _canonical_padding(value, alphabets, out, draw)
    return "".join(out)


def _canonical_padding(value: str, alphabets: list[str], out: list[str], draw: _Draw) -> None:
    """Before base64 padding, the last character's unused bits must stay zero."""
    padding = len(value) - len(value.rstrip("="))
    if padding not in (1, 2) or len(value) <= padding:
        return
    last = len(value) - padding - 1
    step = 4 if padding == 1 else 16
    canonical = [c for c in alphabets[last] if c in _B64 and _B64.index(c) % step == 0]
    if canonical and last not in _kept(value):
        out[last] = draw.choice(canonical)


# --- geo ------------------------------------------------------------------------------------------

_GEO = re.compile(r"\s*-?\d{1,3}(?:\.\d+)?(?:\s*[,;| ]\s*-?\d{1,3}(?:\.\d+)?)?\s*", re.ASCII)
_GEO_NUMBER = re.compile(r"(-?\d{1,3})(?:\.(\d)(\d*))?", re.ASCII)


def _geo(value: str, context: _Context) -> str | None:
    """Coarsened to 0.1° (about 11 km): the first decimal stays, the rest is made up.

    A fixed landmark or 0,0 would be rejected or give the wrong city's stock and delivery times;
    a 0.1° cell keeps the city while the point inside it is nobody's. The made-up digits depend on
    the cell and the site only, so moving inside a cell does not change the fake.
    """
    if not _GEO.fullmatch(value):
        return None
    numbers = list(_GEO_NUMBER.finditer(value))
    if any(abs(float(match.group(0))) > 180 for match in numbers):
        return None
    cell = ",".join(f"{match.group(1)}.{match.group(2) or ''}" for match in numbers)
    draw = context.draw(cell)
    out, position = [], 0
    for match in numbers:
        whole, first, rest = match.group(1), match.group(2), match.group(3)
        out.append(value[position : match.start()])
        if rest:  # at 90° or 180° any other digit would leave the valid range
            tail = "0" * len(rest) if abs(int(whole)) in (90, 180) else draw.digits(len(rest))
            out.append(f"{whole}.{first}{tail}")
        else:
            out.append(match.group(0))  # already no finer than 0.1°
        position = match.end()
    out.append(value[position:])
    text = "".join(out)
    return None if text == value else text


# --- name, address, postcode ----------------------------------------------------------------------


def _script(char: str) -> str | None:
    name = unicodedata.name(char, "")
    for script in ("CJK", "HANGUL", "LATIN", "CYRILLIC"):
        if name.startswith(script):
            return "HAN" if script == "CJK" else script
    return None


def _scripts(text: str) -> set[str | None]:
    return {_script(char) for char in text if char.isalpha()}


def _first_different(candidates: list[str], original: str, draw: _Draw) -> str | None:
    """The first candidate, from a keyed rotation of them, that is not the original."""
    if not candidates:
        return None
    start = draw.index(len(candidates))
    rotated = candidates[start:] + candidates[:start]
    return next((c for c in rotated if c != original), None)


_HAN_PAIRS = ["张三", "李四", "王五", "赵六"]  # the Chinese "John Doe"s
_LATIN_FIRST = ["Alex", "Sam", "Jamie", "Robin", "Taylor", "Kim"]
_LATIN_LAST = ["Doe", "Roe"]


def _name(value: str, context: _Context) -> str | None:
    lead, core, trail = _split_space(value)
    if any(char.isdigit() for char in core) or "@" in core:
        return None
    scripts = _scripts(core)
    if len(scripts) != 1:
        return None
    script = scripts.pop()
    draw = context.draw(core)
    if script in ("HAN", "HANGUL"):
        positions = [i for i, char in enumerate(core) if char.isalpha()]
        size = len(positions)
        if script == "HAN":
            fillers = _HAN_PAIRS if size == 2 else [s[0] + "某" * (size - 1) for s in _HAN_PAIRS]
        else:  # 홍길동 and 김철수 are the Korean placeholders
            fillers = [f"{a}{b * max(size - 2, 0)}{c}"[:size] for a, b, c in ("홍길동", "김철수")]
        candidates = []
        for filler in fillers:
            chars = list(core)
            for position, char in zip(positions, filler, strict=True):
                chars[position] = char
            candidates.append("".join(chars))
        chosen = _first_different(candidates, core, draw)
    elif script in ("LATIN", "CYRILLIC"):
        size = len(core.split())
        if script == "LATIN":
            firsts, lasts, middle = _LATIN_FIRST, _LATIN_LAST, "Lee"
        else:
            firsts, lasts, middle = ["Иван", "Пётр"], ["Иванов", "Петров"], "Иванович"
        candidates = [
            " ".join([first, *[middle] * max(size - 2, 0), *([last] if size > 1 else [])])
            for first in firsts
            for last in lasts
        ]
        if core.isupper():
            candidates = [c.upper() for c in candidates]
        elif core.islower():
            candidates = [c.lower() for c in candidates]
        chosen = _first_different(candidates, core, draw)
    else:
        return None
    return None if chosen is None else lead + chosen + trail


def _address(value: str, context: _Context) -> str | None:
    lead, core, trail = _split_space(value)
    scripts = _scripts(core)
    draw = context.draw(core)
    number = 1 + draw.index(99)
    if "HAN" in scripts:
        parts = [f"某某{unit}" for unit in ("省", "市") if unit in core]
        parts += ["某某区"] if "区" in core else ["某某县"] if "县" in core else []
        candidates = ["".join(parts) + f"某某路{n}号" for n in (number, number % 99 + 1)]
    elif scripts == {"LATIN"}:
        candidates = [f"{n} Example Street" for n in (number, number % 99 + 1)]
        if core.isupper():
            candidates = [c.upper() for c in candidates]
    else:
        return None
    chosen = next(c for c in candidates if c != core)
    return lead + chosen + trail


_POSTCODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]{1,10}[A-Za-z0-9]")
# Letters every UK inward code and every Canadian second/third position accept.
_POST_LETTERS = "ABEGHJLNPRSTWXY"


def _postcode(value: str, context: _Context) -> str | None:
    """Same pattern; the leading area part stays, the rest is made up.

    Kept: the first two digits of a numeric code of five or more digits (a Chinese province, a
    US state group), the first digit of a shorter one (an Australian state), the leading letters
    of an alphanumeric one (UK area "SW", Canadian province "K"). That keeps region-based checks
    and shipping estimates working while the code no longer points at a street.
    """
    lead, core, trail = _split_space(value)
    if not _POSTCODE.fullmatch(core) or not any(char.isdigit() for char in core):
        return None
    if core[0].isalpha():
        keep = len(core) - len(core.lstrip(string.ascii_letters))
        keep = min(keep, 2)
    else:
        keep = 2 if sum(char.isdigit() for char in core) >= 5 else 1
    draw = context.draw(core)
    for _ in range(8):
        out = list(core)
        for index in range(keep, len(core)):
            char = core[index]
            if char.isdigit():
                out[index] = draw.choice(_DIGITS)
            elif char.isalpha():
                letter = draw.choice(_POST_LETTERS)
                out[index] = letter if char.isupper() else letter.lower()
        text = "".join(out)
        if text != core:
            return lead + text + trail
    return None


_HANDLERS: dict[str, Callable[[str, _Context], str | None]] = {
    "phone": _phone,
    "email": _email,
    "name": _name,
    "address": _address,
    "postcode": _postcode,
    "id_number": _id_number,
    "payment_card": _payment_card,
    "geo": _geo,
    "device_id": _identifier,
    "tracking_id": _identifier,
    "ip_address": _ip_address,
}
