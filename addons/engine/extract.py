"""Extraction: every place a value travels in a request, decoded until nothing more decodes.

Input is a `PlainRequest` (no mitmproxy objects) and its body as `body.read_body` classified
it; output is a list of `Field`s, each with its location (see `location`): `query:data.$.shipTo.
mobileNo`, `cookie:cna`, `body:$.address.fullName`, `body.form:cardNumber`, `path:2`. Work is
bounded: bodies are read up to `body_cap`, values are decoded at most `max_layers` deep, and at
most `max_fields` fields are produced; when a bound cuts something off, the extraction says
`partial`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, NamedTuple

from shopguard.engine import composite, decode
from shopguard.engine import location as loc
from shopguard.engine.body import (
    ABSENT,
    BULK,
    FORM,
    JSON,
    MULTIPART,
    TEXT,
    Body,
    collector_paused,
    looks_like_form,
    read_body,
)
from shopguard.engine.memory import Memory, remembered, size_of, sizes, urlsplit
from shopguard.engine.request import PlainRequest

FULL, PARTIAL, NONE = "full", "partial", "none"


class Field(NamedTuple):
    """One value and where it travelled (a tuple: requests have many, they must be cheap)."""

    location: str  # e.g. "query:data.$.receiverMobile"
    key: str  # the innermost key name ("receiverMobile"), "" where there is none
    value: str
    transform: str = ""  # decoding chain, outermost layer first: "base64>urlencode"
    parent: str = ""  # the key of the enclosing object or field ("address" for address.name)

    @property
    def container(self) -> str:
        """The location of the object holding this field (siblings share it)."""
        cut = max(self.location.rfind("."), self.location.rfind(":"))
        return self.location[: cut + 1]


@dataclass(frozen=True)
class Limits:
    body_cap: int = 2 * 1024 * 1024
    max_fields: int = 5000
    max_layers: int = 4  # nested decodings of one value (percent, base64, JSON in form…)
    max_value: int = 64 * 1024  # longer values are matched but not decoded further
    max_json_depth: int = 64


@dataclass
class Extraction:
    fields: list[Field] = field(default_factory=list)
    inspection: str = FULL
    problems: list[str] = field(default_factory=list)
    response_cookies: bool = False  # some fields are response cookies (`set-cookie:…`)
    body: Body | None = None  # the request body as it was read (the editor edits the same)

    def cut(self, problem: str) -> None:
        if self.inspection == FULL:
            self.inspection = PARTIAL
        if problem not in self.problems:
            self.problems.append(problem)


_DECODABLE = re.compile(r"[%\\={\[]")  # escapes and structure
_DIGIT = re.compile(r"\d")
_BASE64_ALPHABET = re.compile(r"\s*[A-Za-z0-9+/_-]+=*\s*")  # (hex is a part of it)
_URL_HEADERS = frozenset({"header:referer", "header:location", "header:origin"})
_SKIP_HEADERS = frozenset(
    {"host", "content-length", "connection", "accept-encoding", "cookie", "content-encoding"}
)


_new = tuple.__new__  # builds a Field without the Python-level NamedTuple constructor


class _Walker:
    __slots__ = ("fields", "limits", "max_fields", "memo", "out")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.max_fields = limits.max_fields
        self.out = Extraction()
        self.fields = self.out.fields
        memo = _memos.get(limits)
        if memo is None:
            if len(_memos) >= _MEMO_LIMITS:
                _memos.clear()
            memo = _memos[limits] = Memory(MEMO_BYTES // _MEMO_LIMITS, oldest_first=True)
        self.memo = memo

    # -- emitting and decoding ------------------------------------------------------------
    def emit(
        self, location: str, key: str, value: str, transform: str = "", parent: str = ""
    ) -> None:
        if len(self.fields) >= self.max_fields:
            self.out.cut(f"more than {self.max_fields} fields")
            return
        if not value:
            return
        if ("|" in value or ";" in value) and " " not in value:
            # parts joined by `|` or `;` (`<android id>|<uuid>`, JD's h5st), in any value
            parts = composite.value_parts(value, key)
            if parts:  # the whole, without its key (the parts are what the key names)
                self.fields.append(_new(Field, (location, "", value, transform, parent)))
                self.parts(location, key, value, parts, transform)
                return
        if value.isdigit():  # a plain number: nothing to decode
            self.fields.append(_new(Field, (location, key, value, transform, parent)))
            return
        structured = _DECODABLE.search(value) is not None
        if not structured and (
            len(value) < 12
            or (value.isalpha() and (value.islower() or value.isupper()))
            or not _BASE64_ALPHABET.fullmatch(value)
        ):
            # nothing to decode (no escape or structure, and not base64 or hex, which need 12
            # characters of their alphabet and are not a plain word): the fast path
            self.fields.append(_new(Field, (location, key, value, transform, parent)))
            return
        layers = transform.count(">") + 1 if transform else 0
        if layers < self.limits.max_layers and len(value) <= self.limits.max_value:
            if structured and self._decode(location, key, value, transform, parent):
                return
            if not structured and self._guess(location, key, value, transform, parent):
                return
        elif len(value) > self.limits.max_value:
            self.out.cut("a value too long to decode")
        self.fields.append(_new(Field, (location, key, value, transform, parent)))

    def recall(self, read: _Reader, location: str, key: str, value: str) -> None:
        """`read(walker, location, key, value)` for a part that recurs request after request
        (the Cookie header and each cookie, the user agent, the Referer).

        Its fields are remembered, so a browsing session decodes each such part once.
        """
        if len(value) > _MEMO_MAX:
            read(self, location, key, value)
            return
        entry = self.memo.get((location, key, value))
        if entry is None:
            walker = _Walker(self.limits)
            read(walker, location, key, value)
            entry = (tuple(walker.fields), tuple(walker.out.problems))
            size = size_of(location, key, value, *walker.out.problems) + 64 * len(walker.fields)
            size += sizes(chain.from_iterable(walker.fields))
            self.memo.keep((location, key, value), entry, size)  # (the oldest forgotten first)
        fields, problems = entry
        if len(fields) > self.max_fields - len(self.fields):
            self.out.cut(f"more than {self.max_fields} fields")
            fields = fields[: max(self.max_fields - len(self.fields), 0)]
        self.fields.extend(fields)
        for problem in problems:
            self.out.cut(problem)

    def _decode(self, location: str, key: str, value: str, transform: str, parent: str) -> bool:
        """Emit what `value` decodes to; True when that replaces the value itself.

        Structure (JSON, forms) and unambiguous escapes replace the value; base64 and hex are
        guesses, so the value is kept beside what it decodes to.
        """
        stripped = value.strip()
        if stripped[:1] in "{[" and stripped[-1:] in "}]":
            try:
                parsed = json.loads(stripped)
            except (ValueError, RecursionError):
                parsed = None
            if isinstance(parsed, (dict, list)):
                self.json(parsed, loc.document(location), transform, key)
                return True
        if stripped[:8].lower().startswith(("https://", "http://")) and "?" in stripped:
            self.address(location, key, stripped, transform, parent)  # a redirect target
            return True
        if "=" in value and looks_like_form(value):
            self.form(value, location, transform, plus=True)
            return True
        step, label = decode.percent(value), "urlencode"
        if step is None:
            step, label = decode.unicode_escapes(value), "unicode_escape"
        if step is None:
            return self._guess(location, key, value, transform, parent)
        self.emit(location, key, step, f"{transform}>{label}" if transform else label, parent)
        return True

    def _guess(self, location: str, key: str, value: str, transform: str, parent: str) -> bool:
        """Base64 or hex that decodes to text: the value as sent first, then its text."""
        stripped = value.strip()
        if decode.is_hex(stripped):  # hex digits: never tried as base64 (that gives bytes)
            step, label = decode.hexa(stripped), "hex"
        else:
            found = decode.b64(stripped) or decode.b64_wrapped(stripped)
            step, label = found if found else (None, "")
        if step is None:
            return False
        self.fields.append(_new(Field, (location, key, value, transform, parent)))
        self.emit(location, key, step, f"{transform}>{label}" if transform else label, parent)
        return True

    # -- structures -------------------------------------------------------------------------
    def json(self, root: object, base: str, transform: str, parent: str = "") -> None:
        """Every leaf of parsed JSON below `base` (`body:$`), with its path and enclosing key.

        Recursion follows containers only (leaves are handled in their parent's loop) and stops
        at `max_json_depth`; the walk ends when the field budget is spent.
        """
        if isinstance(root, (dict, list)):
            self._walk(root, base, "", parent, 0, transform)

    def _walk(
        self, node: Any, location: str, key: str, parent_key: str, depth: int, transform: str
    ) -> bool:
        """The values of one JSON object or array; False once the field budget is spent."""
        if depth >= self.limits.max_json_depth:
            self.out.cut("JSON nested too deep")
            return True
        fields, emit, budget = self.fields, self.emit, self.max_fields
        escaped, escape = loc.escaped_names, loc.escape  # (names recur: looked up, not made)
        if type(node) is dict:  # a member's key is its name; its parent, this object's key
            prefix = location + "."
            for name, value in node.items():
                if len(fields) >= budget:
                    self.out.cut(f"more than {budget} fields")
                    return False
                kind = type(value)
                where = prefix + (escaped.get(name) or escape(name))
                if kind is str:
                    emit(where, name, value, transform, key)
                elif kind is int or kind is float:  # (str of a float is its repr)
                    fields.append(_new(Field, (where, name, str(value), transform, key)))
                elif (kind is dict or kind is list) and not self._walk(
                    value, where, name, key, depth + 1, transform
                ):
                    return False
            return True
        for index, value in enumerate(node):  # an item keeps the array's key and parent
            if len(fields) >= budget:
                self.out.cut(f"more than {budget} fields")
                return False
            kind, where = type(value), f"{location}[{index}]"
            if kind is str:
                emit(where, key, value, transform, parent_key)
            elif kind is int or kind is float:
                fields.append(_new(Field, (where, key, str(value), transform, parent_key)))
            elif (kind is dict or kind is list) and not self._walk(
                value, where, key, parent_key, depth + 1, transform
            ):
                return False
        return True

    def form(
        self, text: str, base: str, transform: str, plus: bool, fragment: bool = False
    ) -> None:
        """`a=1&b=2` (a query or urlencoded body) below `base` (e.g. `query:`); with `fragment`,
        the fragment parameters of the URL at `base`."""
        prefix = base + "#" if fragment else base if base.endswith(":") else base + "."
        escaped, escape, emit = loc.escaped_names, loc.escape, self.emit
        # a cookie's or header's form: its values may be joined parts (`x_user=CN|Wang|…`)
        joined = base.startswith(("cookie:", "header:"))
        pairs = text.split("&")
        if len(pairs) > self.limits.max_fields:
            self.out.cut(f"more than {self.limits.max_fields} fields")
            del pairs[self.limits.max_fields :]
        for pair in pairs:
            if pair:
                name, _, raw = pair.partition("=")
                if "%" in name or "+" in name:
                    name = decode.unquote(name, plus=True)
                if "%" in raw or (plus and "+" in raw):
                    raw = decode.unquote(raw, plus=plus)
                where = prefix + (escaped.get(name) or escape(name))
                if raw and joined and ("|" in raw or ";" in raw or "," in raw):
                    self.joined(where, name, raw, transform)
                elif raw:
                    emit(where, name, raw, transform)
                elif len(self.fields) < self.max_fields:  # a name alone may be personal data
                    self.fields.append(_new(Field, (where, name, "", transform, "")))

    # -- request parts ------------------------------------------------------------------------
    def url(self, url: str) -> None:
        parts = split_url(url)
        if parts is None:
            self.out.cut("an unparsable URL")
            return
        self.host(url)
        path, query, fragment = parts
        segments = [s for s in path.split("/") if s]
        for index, segment in enumerate(segments[: self.limits.max_fields]):
            self.emit(loc.path_segment(index), "", decode.unquote(segment))
        if query:
            self.form(query, "query:", "", plus=True)
        if fragment:
            self.form(fragment, "fragment:", "", plus=False)

    def host(self, url: str) -> None:
        """The labels of the URL's host that may be a value (`13800138000.example.com`): those
        with five digits or more, before the registrable domain's two."""
        start = url.find("//") + 2
        end = len(url)
        for mark in "/?#":
            cut = url.find(mark, start)
            if cut != -1:
                end = min(end, cut)
        for index, label in _value_labels(url[start:end]):
            self.emit(loc.host_label(index), "", label)

    def headers(self, headers: Sequence[tuple[str, str]]) -> None:
        for name, value in headers:
            lower = name.lower()
            if lower == "cookie":
                self.recall(_Walker.cookies, "cookie:", "", value)
            elif lower not in _SKIP_HEADERS:
                location = loc.top("header", lower)
                read: _Reader = _Walker.joined
                if location in _URL_HEADERS:
                    read = _Walker.address
                elif lower in composite.AGENT_HEADERS:
                    read = _Walker.agent
                self.recall(read, location, lower, value)

    def address(
        self, location: str, key: str, value: str, transform: str = "", parent: str = ""
    ) -> None:
        """A URL (a Referer, or a redirect target inside a parameter): the address itself at
        `location`, its query parameters below it (`header:referer.q`) and its fragment's
        (`header:referer#k`)."""
        try:
            parts = urlsplit(value)
        except ValueError:
            self.fields.append(_new(Field, (location, key, value, transform, parent)))
            return
        base = f"{parts.scheme}://{parts.netloc}{parts.path}"
        self.fields.append(_new(Field, (location, key, base, transform, parent)))
        if parts.query:
            self.form(parts.query, location, transform, plus=True)
        if parts.fragment:
            self.form(parts.fragment, location, transform, plus=False, fragment=True)

    def cookies(self, base: str, _key: str, header: str) -> None:
        """The cookies of a Cookie header (`base` "cookie:") or a Set-Cookie ("set-cookie:")."""
        for pair in header.split(";"):
            name, eq, value = pair.strip().partition("=")
            if eq and name:
                value = value.strip().strip('"')
                self.recall(_Walker.joined, base + loc.escape(name), name, value)

    def joined(self, location: str, key: str, value: str, transform: str = "") -> None:
        """A cookie's or header's value, and, when it is one, each part of it joined by `|`,
        `;` or `,` (`location/name`, `location/3`)."""
        if "|" in value or ";" in value or "," in value:  # (most values have no separator)
            parts = composite.value_parts(value, key)
            if parts:  # the value as sent (without its key: the parts are what the key names),
                if len(self.fields) < self.max_fields:  # then its parts, each decoded alone
                    self.fields.append(_new(Field, (location, "", value, transform, "")))
                self.parts(location, key, value, parts, transform)
                return
        self.emit(location, key, value, transform)

    def agent(self, location: str, key: str, value: str) -> None:
        """A User-Agent, and each of its named products and items, and its identifier-like
        unnamed fields (`header:user-agent/UTDID`, `header:user-agent/4`)."""
        self.emit(location, key, value)
        if not composite.browser_agent(value):  # a browser's own holds versions only
            self.parts(location, key, value, composite.agent_parts(value))

    def parts(
        self,
        location: str,
        key: str,
        value: str,
        parts: list[composite.Part],
        transform: str = "",
    ) -> None:
        for name, start, end in parts:  # a named part has its name as key, an unnamed one the
            text = value[start:end]  # key of the whole (`deviceID: "<a>|<b>"`)
            if text:
                label = name if isinstance(name, str) else key
                self.emit(loc.part(location, name), label, text, transform, key)

    def set_cookies(self, headers: Sequence[tuple[str, str]]) -> None:
        for name, value in headers:
            if name.lower() == "set-cookie":
                self.out.response_cookies = True
                self.recall(_Walker.cookies, "set-cookie:", "", value.split(";", 1)[0])

    def body(self, body: Body) -> None:
        """The fields of a body as `read_body` classified it. The parsed document is not kept
        (the editor parses what it edits again, strictly): a large one is freed while the
        cyclic garbage collector is still paused."""
        self.out.body = body
        document, body.document = body.document, None
        for problem in body.problems:
            self.out.cut(problem)
        if body.kind == ABSENT:
            self.out.inspection = NONE
        elif body.kind == JSON:
            self.json(document, "body:$", "")
        elif body.kind == FORM:
            self.form(body.text, "body.form:", "", plus=True)
        elif body.kind == MULTIPART:
            self.multipart(body)
        elif body.kind == TEXT:
            self.emit("body.text", "", body.text)

    def multipart(self, body: Body) -> None:
        assert body.multipart is not None
        for part in body.multipart.parts:
            name, filename = part.disposition
            if filename is not None:  # file parts by name only: their content is not read
                self.emit(loc.top("body.file", name), name, filename)
                continue
            text = decode.text_of(part.content)
            if text is None:
                self.out.cut("a binary multipart part")
                continue
            self.emit(loc.top("body.form", name), name, text)


_MEMO_MAX = 4096  # longer values are decoded each time rather than kept in memory
MEMO_BYTES = 4 * 1024 * 1024  # remembered decodings, in bytes (see `memory`)
_MEMO_LIMITS = 2  # sets of limits remembered for (a process has one, nearly always)
_Reader = Callable[["_Walker", str, str, str], None]  # (walker, location, key, value)
_memos: dict[Limits, Memory] = {}


@remembered(256)
def _value_labels(netloc: str) -> tuple[tuple[int, str], ...]:
    """(index, label) of a host's labels that may be a value (hosts recur: remembered)."""
    netloc = netloc.rpartition("@")[2]
    if netloc.startswith("[") or _DIGIT.search(netloc) is None:  # an IPv6 literal; no digit
        return ()
    labels = netloc.partition(":")[0].split(".")
    return tuple(
        (index, decode.unquote(label))
        for index, label in enumerate(labels[:-2])
        if sum(map(str.isdigit, label)) >= 5
    )


def clear_caches() -> None:
    """Forget remembered decodings (benchmarks measure first sight with it)."""
    _memos.clear()


def split_url(url: str) -> tuple[str, str, str] | None:
    """(path, query, fragment) of a URL as `urlsplit` gives them, or None where it raises.

    A plain http(s) URL is split with three partitions, without `urlsplit`'s cache and checks
    (a request's URL is new each time: its cache only costs).
    """
    scheme = 8 if url.startswith("https://") else 7 if url.startswith("http://") else 0
    if (  # without what urlsplit strips, checks or normalises: spaces, controls, non-ASCII
        scheme  # characters, IPv6 brackets
        and url.isascii()
        and url.isprintable()
        and " " not in url
        and "[" not in url
        and "]" not in url
    ):
        rest, _, fragment = url.partition("#")
        rest, _, query = rest.partition("?")
        slash = rest.find("/", scheme)
        return (rest[slash:] if slash != -1 else ""), query, fragment
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return parts.path, parts.query, parts.fragment


def extract(request: PlainRequest, limits: Limits | None = None) -> Extraction:
    """Every field of `request`, its body read by `read_body` (kept in `Extraction.body`);
    never raises on malformed input."""
    limits = limits or Limits()
    walker = _Walker(limits)
    walker.url(request.url)
    walker.headers(request.headers)
    if len(request.body or b"") > BULK:
        with collector_paused():
            walker.body(read_body(request, limits.body_cap))
    else:
        walker.body(read_body(request, limits.body_cap))
    walker.set_cookies(request.response_headers)
    return walker.out


def extract_message(content: bytes | str, limits: Limits | None = None) -> Extraction:
    """The fields of one WebSocket message (`ws:$…` for JSON, `ws.text` otherwise)."""
    walker = _Walker(limits or Limits())
    text = (
        content if isinstance(content, str) else decode.text_of(content[: walker.limits.body_cap])
    )
    if text is None:
        walker.out.cut("a binary message")
        return walker.out
    stripped = text.strip()
    try:
        parsed = json.loads(stripped) if stripped[:1] in "{[" else None
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, (dict, list)):
        walker.json(parsed, "ws:$", "")
    else:
        walker.emit("ws.text", "", text)
    return walker.out
