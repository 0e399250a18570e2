"""Extraction: every place a value travels in a request, decoded until nothing more decodes.

Input is a `PlainRequest` (no mitmproxy objects); output is a list of `Field`s, each with a
location string such as `query:data.$.shipTo.mobileNo`, `cookie:cna`, `body:$.address.fullName`,
`body.form:cardNumber`, `header:anti-content` or `path:2`. Work is bounded: bodies are read up to
`body_cap`, values are decoded at most `max_layers` deep, and at most `max_fields` fields are
produced; when a bound cuts something off, the extraction says `partial`.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from functools import cached_property
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from shopguard.engine import decode

FULL, PARTIAL, NONE = "full", "partial", "none"


@dataclass(frozen=True)
class PlainRequest:
    """A request as the engine sees it; `body` None means the body was not available."""

    method: str
    url: str
    headers: Sequence[tuple[str, str]] = ()
    body: bytes | None = b""
    body_truncated: bool = False  # the caller already cut the body (e.g. at body_cap)
    response_headers: Sequence[tuple[str, str]] = ()

    def header(self, name: str) -> str | None:
        """The first header of that name (any case), or None."""
        return self._first_headers.get(name.lower())

    @cached_property
    def _first_headers(self) -> dict[str, str]:
        first: dict[str, str] = {}
        for name, value in self.headers:
            first.setdefault(name.lower(), value)
        return first


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

    def cut(self, problem: str) -> None:
        if self.inspection == FULL:
            self.inspection = PARTIAL
        if problem not in self.problems:
            self.problems.append(problem)


_FORM = re.compile(r"^[^=&\s{}\[\]\"]{1,100}=[^&]*(?:&[^=&\s]{1,100}=[^&]*)*$")
_DECODABLE = re.compile(r"[%\\={\[]")  # escapes and structure
_BASE64_ALPHABET = re.compile(r"\s*[A-Za-z0-9+/_-]+=*\s*")  # (hex is a part of it)
_PADDED_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]{6,}={1,2}$")
_JSON_START = re.compile(rb"[\s\x1c-\x1f]*[{\[]")  # (after what str.strip removes, in ASCII)
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
            if len(_memos) >= 16:
                _memos.clear()
            memo = _memos[limits] = {}
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
            if len(self.memo) >= _MEMO_ENTRIES:
                del self.memo[next(iter(self.memo))]  # the oldest first
            self.memo[(location, key, value)] = entry
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
                self.json(parsed, _nest(location, "$"), transform, key)
                return True
        if stripped[:8].lower().startswith(("https://", "http://")) and "?" in stripped:
            self.address(location, key, stripped, transform, parent)  # a redirect target
            return True
        if "=" in value and _FORM.match(value) and not _looks_base64(value):
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
            found = decode.b64(stripped)
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
        if type(node) is dict:  # a member's key is its name; its parent, this object's key
            prefix = location if location.endswith((":", ".", "#")) else location + "."
            for name, value in node.items():
                if len(fields) >= budget:
                    self.out.cut(f"more than {budget} fields")
                    return False
                kind = type(value)
                if kind is str:
                    emit(prefix + name, name, value, transform, key)
                elif kind is int or kind is float:  # (str of a float is its repr)
                    fields.append(_new(Field, (prefix + name, name, str(value), transform, key)))
                elif (kind is dict or kind is list) and not self._walk(
                    value, prefix + name, name, key, depth + 1, transform
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

    def form(self, text: str, base: str, transform: str, plus: bool) -> None:
        """`a=1&b=2` (a query or urlencoded body) below `base` (e.g. `query:`)."""
        prefix = _nest(base, "")
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
                self.emit(prefix + name, name, raw, transform)

    # -- request parts ------------------------------------------------------------------------
    def url(self, url: str) -> None:
        parts = split_url(url)
        if parts is None:
            self.out.cut("an unparsable URL")
            return
        path, query, fragment = parts
        segments = [s for s in path.split("/") if s]
        for index, segment in enumerate(segments[: self.limits.max_fields]):
            self.emit(f"path:{index}", "", decode.unquote(segment))
        if query:
            self.form(query, "query:", "", plus=True)
        if fragment:
            self.form(fragment, "fragment:", "", plus=False)

    def headers(self, headers: Sequence[tuple[str, str]]) -> None:
        for name, value in headers:
            lower = name.lower()
            if lower == "cookie":
                self.recall(_Walker.cookies, "cookie:", "", value)
            elif lower not in _SKIP_HEADERS:
                location = f"header:{lower}"
                read = _Walker.address if location in _URL_HEADERS else _Walker.emit
                self.recall(read, location, lower, value)

    def address(
        self, location: str, key: str, value: str, transform: str = "", parent: str = ""
    ) -> None:
        """A URL (a Referer, or a redirect target inside a parameter): the address itself at
        `location`, its query below `location.` and its fragment below `location#`."""
        try:
            parts = urlsplit(value)
        except ValueError:
            self.fields.append(_new(Field, (location, key, value, transform, parent)))
            return
        base = f"{parts.scheme}://{parts.netloc}{parts.path}"
        self.fields.append(_new(Field, (location, key, base, transform, parent)))
        if parts.query:
            self.form(parts.query, f"{location}.", transform, plus=True)
        if parts.fragment:
            self.form(parts.fragment, f"{location}#", transform, plus=False)

    def cookies(self, base: str, _key: str, header: str) -> None:
        """The cookies of a Cookie header (`base` "cookie:") or a Set-Cookie ("set-cookie:")."""
        for pair in header.split(";"):
            name, eq, value = pair.strip().partition("=")
            if eq and name:
                self.recall(_Walker.emit, f"{base}{name}", name, value.strip().strip('"'))

    def set_cookies(self, headers: Sequence[tuple[str, str]]) -> None:
        for name, value in headers:
            if name.lower() == "set-cookie":
                self.out.response_cookies = True
                self.recall(_Walker.cookies, "set-cookie:", "", value.split(";", 1)[0])

    def body(self, request: PlainRequest) -> None:
        data = request.body
        if data is None:  # streamed through without being kept: nothing of it was seen
            self.out.cut("the body was streamed, not inspected")
            self.out.inspection = NONE
            return
        if request.body_truncated:
            self.out.cut(f"the body was cut at {self.limits.body_cap} bytes")
        if not data:
            return
        encoding = request.header("content-encoding") or ""
        for layer in reversed([e for e in encoding.split(",") if e.strip()]):
            decoded = decode.decompress(data, layer, self.limits.body_cap)
            if decoded is None:
                self.out.cut(f"a body that does not decode as {layer.strip()}")
                return
            data, truncated = decoded
            if truncated:
                self.out.cut(f"the body was cut at {self.limits.body_cap} bytes")
        if len(data) > self.limits.body_cap:
            data = data[: self.limits.body_cap]
            self.out.cut(f"the body was cut at {self.limits.body_cap} bytes")
        if len(data) > _BULK:
            with _collector_paused():
                self.content(data, request)
        else:
            self.content(data, request)

    def content(self, data: bytes, request: PlainRequest) -> None:
        """The decoded body: multipart, JSON, a form or text."""
        content_type = (request.header("content-type") or "").lower()
        if content_type.startswith("multipart/"):
            self.multipart(data, request.header("content-type") or "")
            return
        tried = (  # JSON by its type or first character, or text with a byte-order mark or in
            "json" in content_type  # UTF-16/32: the redactor reads such bodies the same way
            or _JSON_START.match(data) is not None
            or json.detect_encoding(data[:4]) != "utf-8"
        )
        json_text = decode.json_text(data) if tried else None
        if json_text is not None and (
            self.json_body(json_text)  # (JSON is text: a large body skips `text_of`'s check)
            # or inside characters JSON does not allow around it, which str.strip removes
            # (SignalR ends each message with a \x1e)
            or (
                json_text.strip() != json_text.strip(_JSON_SPACE)
                and self.json_body(json_text.strip())
            )
        ):
            return
        text = decode.text_of(data)
        if text is None:
            text = _cut_utf8(data)
            if text is None:
                self.out.cut("a binary body")
                return
        self.text_body(text, content_type, json_tried=tried)

    def json_body(self, text: str) -> bool:
        """Walk `text` if it is a JSON object or array; False if it is not."""
        try:
            parsed = json.loads(text)
        except RecursionError:
            self.out.cut("JSON nested too deep")
            return False
        except ValueError:
            return False
        if not isinstance(parsed, (dict, list)):
            return False
        self.json(parsed, "body:$", "")
        return True

    def text_body(self, text: str, content_type: str, json_tried: bool = False) -> None:
        """A body not read as JSON yet (`json_tried` False) or that is not JSON: a form, or
        text."""
        stripped = text.strip()
        if not json_tried and stripped[:1] in "{[" and self.json_body(stripped):
            return
        if "x-www-form-urlencoded" in content_type or _FORM.match(stripped):
            self.form(stripped, "body.form:", "", plus=True)
            return
        self.emit("body.text", "", text)

    def multipart(self, data: bytes, content_type: str) -> None:
        body = read_multipart(data, content_type)
        if body is None:
            self.out.cut("a multipart body without boundary")
            return
        for part in body.parts:
            name, filename = part.disposition
            if filename is not None:  # file parts by name only: their content is not read
                self.emit(f"body.file:{name}", name, filename)
                continue
            text = decode.text_of(part.content)
            if text is None:
                self.out.cut("a binary multipart part")
                continue
            self.emit(f"body.form:{name}", name, text)


_BULK = 64 * 1024  # larger bodies are read with the cyclic garbage collector paused


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Parsing a large JSON body makes tens of thousands of containers, none in a cycle, and
    the cyclic garbage collector would traverse them again and again while they are made (it
    cost a third of the time of a 1 MiB body). Paused for the read, which frees the parsed
    document before the collector resumes; left alone when something else paused it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


_MEMO_MAX = 4096  # longer values are decoded each time rather than kept in memory
_MEMO_ENTRIES = 4096  # remembered decodings per set of limits
_Memo = dict[tuple[str, str, str], tuple[tuple[Field, ...], tuple[str, ...]]]
_Reader = Callable[["_Walker", str, str, str], None]  # (walker, location, key, value)
_memos: dict[Limits, _Memo] = {}


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


def looks_like_form(text: str) -> bool:
    """`a=1&b=2` text (also when sent as text/plain, as navigator.sendBeacon does)."""
    return _FORM.match(text) is not None and not _looks_base64(text)


def _nest(base: str, name: str) -> str:
    return f"{base}{name}" if base.endswith((":", ".", "#")) else f"{base}.{name}"


def _looks_base64(value: str) -> bool:
    """`abc==` looks like a form pair to a naive parser; it is base64 padding (of text or not)."""
    return _PADDED_BASE64.match(value) is not None


_JSON_SPACE = " \t\n\r"  # the whitespace JSON allows around a document


def _cut_utf8(data: bytes) -> str | None:
    """Text of a body cut in the middle of a UTF-8 character (a capped body)."""
    if not data or data[-1] < 0x80:  # it ends with an ASCII character: not cut in one
        return None
    for drop in (1, 2, 3):
        text = decode.text_of(data[:-drop])
        if text is not None:
            return text
    return None


class Part(NamedTuple):
    """One part of a multipart body; `prefix + content + suffix` is the part as it came."""

    prefix: bytes  # the line break after the delimiter, the part's header lines, a blank line
    content: bytes
    suffix: bytes  # the line break that belongs to the next delimiter
    headers: dict[str, str]  # lower-case names

    @property
    def disposition(self) -> tuple[str, str | None]:
        """The form field's name ("" when it has none) and the file name of a file part."""
        message = Message()
        message["content-disposition"] = self.headers.get("content-disposition", "")
        name = message.get_param("name", header="content-disposition")
        filename = message.get_param("filename", header="content-disposition")
        return (str(name) if name else ""), (str(filename) if filename is not None else None)


class Multipart(NamedTuple):
    """A multipart body split at its delimiters; `encoded(parts)` is the body as it came."""

    delimiter: bytes
    preamble: bytes
    parts: list[Part]
    closing: bytes | None  # what follows the closing delimiter ("--", an epilogue); None if cut

    def encoded(self, parts: Iterable[Part]) -> bytes:
        """The body with `parts` (edited or not) between the same delimiters."""
        out = [self.preamble]
        for part in parts:
            out += [self.delimiter, part.prefix, part.content, part.suffix]
        if self.closing is not None:
            out += [self.delimiter, self.closing]
        return b"".join(out)


def read_multipart(data: bytes, content_type: str) -> Multipart | None:
    """The parts of a multipart body; None without a boundary in `content_type`."""
    message = Message()
    message["content-type"] = content_type
    boundary = message.get_param("boundary")
    if not boundary:
        return None
    delimiter = b"--" + str(boundary).encode("latin-1", "replace")
    # a delimiter starts a line (RFC 2046): `--boundary` inside a value is not one
    starts = [m.start() for m in re.finditer(rb"(?:^|(?<=\n))" + re.escape(delimiter), data)]
    bounds = [*starts, len(data)]
    chunks = [data[: bounds[0]]]  # the preamble, then what follows each delimiter
    chunks += [data[bounds[i] + len(delimiter) : bounds[i + 1]] for i in range(len(starts))]
    parts: list[Part] = []
    for index in range(1, len(chunks)):
        chunk = chunks[index]
        if chunk.startswith(b"--"):
            return Multipart(delimiter, chunks[0], parts, delimiter.join(chunks[index:]))
        blank = re.search(rb"\r?\n\r?\n", chunk)  # the first blank line ends the headers
        head, sep, content = (
            (chunk[: blank.start()], blank.group(0), chunk[blank.end() :])
            if blank
            else (chunk, b"", b"")
        )
        kept = content.removesuffix(b"\r\n")
        if len(kept) == len(content):
            kept = content.removesuffix(b"\n")
        headers = {}
        for line in head.decode("utf-8", "replace").splitlines():
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        parts.append(Part(head + sep, kept, content[len(kept) :], headers))
    return Multipart(delimiter, chunks[0], parts, None)


def extract(request: PlainRequest, limits: Limits | None = None) -> Extraction:
    """Every field of `request`; never raises on malformed input."""
    walker = _Walker(limits or Limits())
    walker.url(request.url)
    walker.headers(request.headers)
    walker.body(request)
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
