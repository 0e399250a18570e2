"""Locations: the one notation for where a value travelled (`query:data.$.shipTo.mobileNo`).

Every other module builds and reads locations through this one; the grammar is written down
in the README (*Locations*). In short:

    location = kind ":" first { step }  |  "body.text"  |  "ws.text"
    first    = "$" | name                 (a path segment's number for `path:`)
    step     = "." name                   a member of a JSON object, or a parameter of a form
                                          or a URL's query inside the value
             | "#" name                   a parameter of the fragment of a URL inside the value
             | "[" digits "]"             an item of a JSON array
             | ".$"                       the JSON document inside this (string) value
             | "/" name                   a named part of a composite value: a `name/value`
                                          product of a User-Agent, a `name=value` part of a
                                          value split by `;`, `|` or `,`
             | "/" digits                 the n-th part (from 0) of such a value, unnamed
    name     = characters, with `%`, `.`, `:`, `$`, `[`, `]`, `@`, `#`, `{`, `}`, `/`, spaces
               and control characters written as `%XX` (UTF-8 bytes of the character); a
               part's name of digits only has its first digit written so (`/%31`)
             | "{" category ":" preview "}"   a name that is itself personal data, masked

Parsing gives a `Location`: its kind and a tuple of `Step`s, so that code never slices
strings to find out where a value is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from shopguard.engine.memory import ENTRY_OVERHEAD, size_of

KINDS = frozenset(
    {
        "query",
        "fragment",
        "path",
        "host",
        "header",
        "cookie",
        "set-cookie",
        "body",
        "body.form",
        "body.file",
        "ws",
    }
)
WHOLE = frozenset({"body.text", "ws.text"})  # locations that are a whole body or message
NAME, FRAGMENT, INDEX, DOCUMENT, MASKED = "name", "fragment", "index", "document", "masked"
PART = "part"  # a part of a composite value: by name (str) or by position (int)
NUMBERED = frozenset({"path", "host"})  # kinds whose first step is a number

_RESERVED = re.compile(r"[%.:$\[\]@#{}/\s\x00-\x1f\x7f\ud800-\udfff]")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}(?:%[0-9A-Fa-f]{2})*")
_DELIMITERS = re.compile(r"[.#/\[]")
_RAW = re.compile(r"[:$\[\]@{}/\s\x00-\x1f\x7f]")  # what a name holds only escaped
NAMES_BYTES = 2 * 1024 * 1024  # the names remembered as written, in bytes (see `memory`)
escaped_names: dict[str, str] = {}  # name -> as written (names recur request after request;
# a plain dictionary: it is read for every field)
_escaped_bytes = [0]  # what `escaped_names` holds, as `memory.size_of` counts it


class LocationError(ValueError):
    """A location string that does not follow the grammar."""


class Step(NamedTuple):
    """One step of a location: a name, a fragment parameter, an array index, the JSON document
    inside a value, a part of a composite value (its name, or its position as an int), or a
    masked name (`value` is then "category:preview")."""

    kind: str
    value: str | int = ""


class Location(NamedTuple):
    kind: str  # "query", "body", "body.form", … or a whole part: "body.text", "ws.text"
    steps: tuple[Step, ...] = ()

    @property
    def first(self) -> Step | None:
        return self.steps[0] if self.steps else None

    @property
    def field(self) -> str | None:
        """The name of the field, parameter, cookie or header the value travelled in (None for a
        JSON body, a path segment or a whole body)."""
        first = self.first
        return str(first.value) if first is not None and first.kind == NAME else None


# -- building ---------------------------------------------------------------------------------


def _digits(text: str) -> bool:
    """ASCII digits only (`str.isdigit` holds for `¹` and other scripts' digits too)."""
    return text.isascii() and text.isdigit()


def escape(name: str) -> str:
    """`name` as written in a location: reserved characters as `%XX`."""
    done: str | None = escaped_names.get(name)
    if done is not None:
        return done
    if _RESERVED.search(name) is None:
        done = name
    else:
        done = _RESERVED.sub(
            lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8", "surrogatepass")),
            name,
        )
    size = (size_of(name) if done is name else size_of(name, done)) + ENTRY_OVERHEAD // 2
    if size <= NAMES_BYTES // 16:  # (a huge name is escaped each time)
        if _escaped_bytes[0] + size > NAMES_BYTES:
            escaped_names.clear()
            _escaped_bytes[0] = 0
        escaped_names[name] = done
        _escaped_bytes[0] += size
    return done


def escaped_bytes() -> int:
    """What the names remembered as written hold, in bytes (at most `NAMES_BYTES`)."""
    return _escaped_bytes[0]


def unescape(text: str) -> str:
    if "%" not in text:
        return text
    return _ESCAPE.sub(_unescaped, text)


def _unescaped(match: re.Match[str]) -> str:
    data = bytes.fromhex(match.group().replace("%", ""))
    try:  # (a lone surrogate in a JSON key is written as its UTF-8-like bytes)
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace")


def top(kind: str, name: str) -> str:
    """The location of a field named `name` directly in `kind` (`query:spm`, `cookie:cna`)."""
    return f"{kind}:{escape(name)}"


def member(base: str, name: str) -> str:
    """A member `name` of what is at `base` (an object member, or a parameter of the form or URL
    held there); at a kind's root (`query:`), the field itself."""
    return f"{base}{escape(name)}" if base.endswith(":") else f"{base}.{escape(name)}"


def fragment_param(base: str, name: str) -> str:
    """A parameter of the fragment of the URL at `base` (`header:referer#k`)."""
    return f"{base}#{escape(name)}"


def item(base: str, index: int) -> str:
    return f"{base}[{index}]"


def document(base: str) -> str:
    """The JSON document inside the value at `base` (`query:data.$`; a body's own is `body:$`)."""
    return f"{base}$" if base.endswith(":") else f"{base}.$"


def path_segment(index: int) -> str:
    return f"path:{index}"


def host_label(index: int) -> str:
    """The `index`-th label of the request's host, leftmost first (`host:0`)."""
    return f"host:{index}"


def part(base: str, name: str | int) -> str:
    """A part of the composite value at `base`: named (`header:user-agent/UTDID`) or the n-th
    unnamed one (`header:user-agent/4`)."""
    if isinstance(name, int):
        return f"{base}/{name}"
    token = escape(name)
    if _digits(token):  # a name of digits is not a position
        token = f"%{ord(token[0]):02X}{token[1:]}"
    return f"{base}/{token}"


def masked(category: str, preview: str) -> str:
    """A name that is personal data, as it is written instead of it: `{phone:138****8000}`."""
    return "{" + category + ":" + preview.replace("%", "%25").replace("}", "%7D") + "}"


def build(location: Location) -> str:
    """The text of a parsed location (`parse(build(x)) == x`)."""
    if location.kind in WHOLE and not location.steps:
        return location.kind
    whole = location.kind in WHOLE  # steps of a whole body or message all have their lead
    out = [location.kind] if whole else [location.kind, ":"]
    for index, step in enumerate(location.steps):
        position = index + whole
        if step.kind == INDEX:
            text = f"{step.value}" if position == 0 else f"[{step.value}]"
        elif step.kind == PART:
            text = part("", step.value)
        else:
            if step.kind == DOCUMENT:
                token = "$"
            elif step.kind == MASKED:
                category, _, preview = str(step.value).partition(":")
                token = masked(category, preview)
            else:
                token = escape(str(step.value))
            lead = "#" if step.kind == FRAGMENT else "."
            text = token if position == 0 else lead + token
        out.append(text)
    return "".join(out)


# -- reading ----------------------------------------------------------------------------------


def parse(text: str) -> Location:
    """The kind and steps of a location; raises LocationError where it does not follow the
    grammar."""
    if text in WHOLE:
        return Location(text)
    whole = next(
        (w for w in WHOLE if text.startswith(w) and text[len(w) : len(w) + 1] in ".#[/"), ""
    )
    if whole:  # what a whole text body or message holds (a form, a URL, JSON inside it)
        kind, rest = whole, text[len(whole) :]
        if rest[0] == "[":
            raise LocationError(f"bad array index in {text!r}")
        lead, rest = rest[0], rest[1:]
    else:
        kind, colon, rest = text.partition(":")
        if not colon or kind not in KINDS:
            raise LocationError(f"not a location: {text!r} (expected e.g. 'query:spm')")
        lead = ""
    steps: list[Step] = []
    position, size = 0, len(rest)
    while True:
        if rest.startswith("{", position):  # a masked name
            end = rest.find("}", position)
            if end < 0:
                raise LocationError(f"unclosed masked name in {text!r}")
            category, sep, preview = rest[position + 1 : end].partition(":")
            if not sep:
                raise LocationError(f"masked name without a category in {text!r}")
            steps.append(Step(MASKED, f"{category}:{unescape(preview)}"))
            position = end + 1
        else:
            found = _DELIMITERS.search(rest, position)
            end = found.start() if found else size
            token = rest[position:end]
            position = end
            if token != "$" and _RAW.search(token):
                raise LocationError(f"unescaped character in {token!r} of {text!r}")
            if lead == "/":
                if not token:
                    raise LocationError(f"empty part in {text!r}")
                steps.append(Step(PART, int(token) if _digits(token) else unescape(token)))
            elif token == "$" and lead != "#":
                steps.append(Step(DOCUMENT))
            elif kind in NUMBERED and not steps:
                if not _digits(token):
                    raise LocationError(f"a {kind} location takes a number: {text!r}")
                steps.append(Step(INDEX, int(token)))
            else:
                steps.append(Step(FRAGMENT if lead == "#" else NAME, unescape(token)))
        # what follows: array items, then the next step's delimiter
        while rest.startswith("[", position):
            end = rest.find("]", position)
            digits = rest[position + 1 : end] if end > 0 else ""
            if not _digits(digits):
                raise LocationError(f"bad array index in {text!r}")
            steps.append(Step(INDEX, int(digits)))
            position = end + 1
        if position >= size:
            return Location(kind, tuple(steps))
        lead = rest[position]
        if lead not in ".#/":
            raise LocationError(f"unexpected {lead!r} in {text!r}")
        position += 1


def innermost_name(location: str) -> str:
    """The innermost name of a location: `cookie:cna` -> cna, `body:$.a.umid` -> umid,
    `query:data.$.items[0]` -> items; "" where there is none."""
    try:
        steps = parse(location).steps
    except LocationError:
        return ""
    for step in reversed(steps):
        if step.kind in (NAME, FRAGMENT) or (step.kind == PART and isinstance(step.value, str)):
            return str(step.value)
        if step.kind == MASKED:
            return ""
    return ""


def within(location: str, target: str) -> bool:
    """Whether a value at `location` is inside what `target` names (`cookie:cna` holds
    `cookie:cna` and `cookie:cna/0`; `body:$.device` holds `body:$.device.imei`)."""
    if location == target:
        return True
    try:
        inner, outer = parse(location), parse(target)
    except LocationError:
        return False
    return inner.kind == outer.kind and inner.steps[: len(outer.steps)] == outer.steps


def segment_index(location: str) -> int | None:
    """The path segment a `path:N` location names, or None."""
    if not location.startswith("path:"):
        return None
    digits = location[5:].split(".", 1)[0].split("[", 1)[0]
    return int(digits) if _digits(digits) else None


def with_masks(location: str, masks: Mapping[str, str]) -> str:
    """`location` with every name in `masks` (escaped name -> masked name) written masked."""
    if not masks or ":" not in location:
        return location  # (also `request`, `message`: targets that are no location)
    kind, _, rest = location.partition(":")
    out, position = [kind, ":"], 0
    for found in _DELIMITERS.finditer(rest):
        out.append(_masked_token(rest[position : found.start()], masks))
        out.append(found.group())
        position = found.end()
    out.append(_masked_token(rest[position:], masks))
    return "".join(out)


def _masked_token(token: str, masks: Mapping[str, str]) -> str:
    if "]" in token:  # an index's digits (`0]`), maybe followed by nothing
        return token
    return masks.get(token, token)
