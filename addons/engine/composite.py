"""Composite values: the parts of a User-Agent, and of a value joined by `|`, `;` or `,`.

A part is named (`UTDID/…` or `name=value`, `name:value`) or numbered by its position among
all the parts of the value (`jdapp;android;12.1.0;;<uuid>` -> part 4). Each part is given as a
span of the original text, so that the editor can replace one in place and leave the rest of
the value as it was. Splitting is bounded: at most `MAX_PARTS` parts, and values longer than
`MAX_VALUE` are not split.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from shopguard.engine.memory import remembered

MAX_PARTS = 64
MAX_VALUE = 4096
MIN_UNNAMED = 16  # a User-Agent's unnamed word is a part only from this length (an ID, not "like")
_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_.$-]{0,63}")
_WORD_ID = re.compile(r"[A-Za-z0-9_-]+")  # an unnamed User-Agent word that may be an ID
_SEPARATORS = ("|", ";", ",")
# values that look like a standard header's list or a date are left whole
_LIST_HEADERS = frozenset(
    {
        "accept",
        "accept-language",
        "accept-charset",
        "cache-control",
        "content-type",
        "content-disposition",
        "if-modified-since",
        "if-none-match",
        "pragma",
        "te",
        "upgrade",
        "via",
        "forwarded",
        "priority",
        "authorization",
        "proxy-authorization",
        "link",
        "dnt",
    }
)


AGENT_HEADERS = frozenset({"user-agent", "x-user-agent"})
# a web browser's own User-Agent: the platform comment, the engine, and the browsers' product
# tokens, nothing else (an app's web view adds its own tokens, or `; wv` on Android)
_BROWSER = re.compile(
    r"Mozilla/5\.0 \((?![^)]*; wv\))[^()]*\) "
    r"(?:AppleWebKit/[\d.]+ \(KHTML, like Gecko\)(?: Version/[\d.]+)?"
    r"(?: (?:Chrome|CriOS|FxiOS|EdgiOS)/[\d.]+)?(?: Mobile(?:/\w+)?)? Safari/[\d.]+"
    r"|Gecko/[\d.]+ Firefox/[\d.]+)"
    r"(?: (?:Edg|EdgA|OPR|YaBrowser|SamsungBrowser|Vivaldi)/[\d.]+)*"
)


@remembered(256, entry_bytes=1024)  # (a User-Agent may be long)
def browser_agent(text: str) -> bool:
    """Whether a User-Agent is a web browser's (not an app's, its web view's, or a library's):
    a page in a browser can read no hardware or app-install identifier."""
    return len(text) <= 512 and _BROWSER.fullmatch(text) is not None


class Part(NamedTuple):
    name: str | int  # the part's name, or its position when it has none
    start: int  # the value's span in the composite text
    end: int


def agent_parts(text: str) -> list[Part]:
    """The parts of a User-Agent. Products (`name/version`) and `name=value` items are named;
    a UA written as `;`-joined fields (`jdapp;android;12.1.0;;…`) has its unnamed fields by
    position; in a space-separated UA, the named items of its comments `(…; …)` count, and an
    unnamed word only when it is long enough to be an identifier."""
    if len(text) > MAX_VALUE:
        return []
    tokens = _top_level(text, ";")
    if len(tokens) > 1:  # `;`-joined fields
        return _named_or_numbered(text, tokens, "/=:")
    parts: list[Part] = []
    for position, (start, end) in enumerate(_top_level(text, " ")):
        token = text[start:end]
        if token.startswith("(") and token.endswith(")"):
            for item_start, item_end in _split_spans(text, start + 1, end - 1, ";"):
                named = _named(text, item_start, item_end, "/=:")
                if named is not None:
                    parts.append(named)
            continue
        named = _named(text, start, end, "/=:")
        if named is not None:
            parts.append(named)
        elif end - start >= MIN_UNNAMED and _WORD_ID.fullmatch(text, start, end):
            parts.append(Part(position, start, end))
        if len(parts) >= MAX_PARTS:
            break
    return parts


def value_parts(text: str, header: str = "") -> list[Part]:
    """The parts of a cookie's or a header's value joined by `|`, `;` or `,` (the first of
    these, in that order, that the value holds), or [] when it is not one: fewer than two
    parts, a standard header's list, a form, JSON or a URL (those are read as what they are)."""
    if header in _LIST_HEADERS or len(text) > MAX_VALUE:
        return []
    stripped = text.lstrip()
    if not stripped or stripped[0] in '{["' or stripped.startswith(("http://", "https://")):
        return []
    if "=" in text and "&" in text:  # a form: its fields are read as such (their values'
        return []  # parts then)
    separator = next((s for s in _SEPARATORS if s in text), None)
    if separator is None:
        return []
    spans = _split_spans(text, 0, len(text), separator)
    if len(spans) < 2:
        return []
    return _named_or_numbered(text, spans, "=:")


def _named_or_numbered(text: str, spans: list[tuple[int, int]], marks: str) -> list[Part]:
    parts = []
    for position, (start, end) in enumerate(spans[:MAX_PARTS]):
        named = _named(text, start, end, marks)
        parts.append(named if named is not None else Part(position, start, end))
    return parts


def _named(text: str, start: int, end: int, marks: str) -> Part | None:
    """`name/value`, `name=value` or `name:value` (with a mark of `marks`) in text[start:end]."""
    match = _NAME.match(text, start, end)
    if match is None or match.end() >= end or text[match.end()] not in marks:
        return None
    return Part(match.group(), match.end() + 1, end)


def _top_level(text: str, separator: str) -> list[tuple[int, int]]:
    """Spans of `text` split at `separator` outside parentheses, brackets and braces, trimmed of
    spaces (empty fields kept, as positions count them)."""
    spans: list[tuple[int, int]] = []
    depth = start = 0
    for index, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}" and depth:
            depth -= 1
        elif char == separator and depth == 0:
            spans.append(_trimmed(text, start, index))
            start = index + 1
            if len(spans) >= MAX_PARTS:
                return spans
    spans.append(_trimmed(text, start, len(text)))
    if separator == " ":
        spans = [(s, e) for s, e in spans if e > s]
    return spans


def _split_spans(text: str, start: int, end: int, separator: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    begin = start
    while len(spans) < MAX_PARTS:
        cut = text.find(separator, begin, end)
        if cut == -1:
            spans.append(_trimmed(text, begin, end))
            break
        spans.append(_trimmed(text, begin, cut))
        begin = cut + 1
    return spans


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start] == " ":
        start += 1
    while end > start and text[end - 1] == " ":
        end -= 1
    return start, end


def parts_of(text: str, name: str) -> list[Part]:
    """The parts of the value of the header or cookie `name` (a User-Agent read as one)."""
    return agent_parts(text) if name in AGENT_HEADERS else value_parts(text, name)


def find(text: str, name: str, part: str | int) -> Part | None:
    """The part of `text` (the value of `name`) named or numbered `part`."""
    return next((p for p in parts_of(text, name) if p.name == part), None)


def edited(text: str, name: str, part: str | int, new: str | None) -> str | None:
    """`text` with one part set to `new`, or removed (`new` None: a named part goes with its
    name and one separator, an unnamed one is emptied, so that positions stay); None when the
    part is not there."""
    found = find(text, name, part)
    if found is None:
        return None
    if new is not None or isinstance(found.name, int):
        return text[: found.start] + (new or "") + text[found.end :]
    start = found.start - len(found.name) - 1
    end = found.end
    if end < len(text) and text[end] in "|;, ":
        end += 1
        while end < len(text) and text[end] == " ":
            end += 1
    elif start > 0 and text[start - 1] in "|;, ":
        start -= 1
    return text[:start] + text[end:]
