"""The one reader of a request body: decoded and classified once, for extraction and editing.

A body is read as multipart, JSON (in UTF-8, UTF-16 or UTF-32, with a byte-order mark, and framed
by characters JSON does not allow around it, such as SignalR's record separator), a form
(urlencoded, or `a=1&b=2` sent as text/plain as `navigator.sendBeacon` does), text or binary.
Extraction walks what this reader found; the request editor edits the same thing, so that what
detection can see, redaction can act on (or say why not).
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from typing import Any, NamedTuple

from shopguard.engine import decode
from shopguard.engine.request import PlainRequest

ABSENT, EMPTY, FORM, JSON, MULTIPART, TEXT, BINARY = (
    "absent",  # streamed through, never seen
    "empty",
    "form",
    "json",
    "multipart",
    "text",
    "binary",  # also a body that does not decode
)
BULK = 64 * 1024  # larger bodies are read with the cyclic garbage collector paused

_FORM = re.compile(r"^[^=&\s{}\[\]\"]{1,100}=[^&]*(?:&[^=&\s]{1,100}=[^&]*)*$")
_PADDED_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]{6,}={1,2}$")
_JSON_START = re.compile(rb"[\s\x1c-\x1f]*[{\[]")  # (after what str.strip removes, in ASCII)


@dataclass(slots=True)
class Body:
    """What a request body is, read once. (Extraction takes `document` out once it has walked
    it, so that a large parsed document does not outlive the read.)"""

    kind: str
    data: bytes = b""  # the bytes with the Content-Encoding undone, at most the cap
    complete: bool = True  # False: cut (at the cap, or by the caller) or not decodable
    problems: tuple[str, ...] = ()  # what kept it from being read in full
    text: str = ""  # a form's text, a JSON document's text (without its frame), or the text
    document: Any = None  # the parsed JSON document (an object or an array)
    codec: str = "utf-8"  # a JSON body's encoding, its byte-order mark, and what surrounds it
    mark: bytes = b""
    frame: tuple[str, str] = ("", "")
    multipart: Multipart | None = None

    @property
    def editable(self) -> str | None:
        """Why this body cannot be written back edited; None when it can."""
        if self.kind not in (FORM, JSON, MULTIPART):
            return f"a {self.kind} body cannot be edited"
        if not self.complete:
            return "the body was not read whole (cut at the size limit): it cannot be edited"
        return None


def looks_like_form(text: str) -> bool:
    """`a=1&b=2` text; `abc==` is base64 padding, not a form pair."""
    return _FORM.match(text) is not None and _PADDED_BASE64.match(text) is None


@contextmanager
def collector_paused() -> Iterator[None]:
    """Reading a large JSON body (over BULK) makes tens of thousands of containers, none in a
    cycle, and the cyclic garbage collector would traverse them again and again while they are
    made (a third of the time of a 1 MiB body). Left alone when something else paused it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def read_body(request: PlainRequest, cap: int) -> Body:
    """Decode and classify `request`'s body, reading at most `cap` bytes of it; never raises."""
    data = request.body
    if data is None:
        return Body(ABSENT, complete=False, problems=("the body was streamed, not inspected",))
    problems: list[str] = []
    complete = True
    cut = f"the body was cut at {cap} bytes"
    if request.body_truncated:
        problems.append(cut)
        complete = False
    if not data:
        return Body(EMPTY, complete=complete, problems=tuple(problems))
    encoding = request.header("content-encoding") or ""
    for layer in reversed([e for e in encoding.split(",") if e.strip()]):
        decoded = decode.decompress(data, layer, cap)
        if decoded is None:
            problems.append(f"a body that does not decode as {layer.strip()}")
            return Body(BINARY, complete=False, problems=tuple(problems))
        data, truncated = decoded
        if truncated:
            complete = False
            if cut not in problems:
                problems.append(cut)
    if len(data) > cap:
        data = data[:cap]
        complete = False
        if cut not in problems:
            problems.append(cut)
    content_type = request.header("content-type") or ""
    return _classify(data, content_type, complete, problems)


def _classify(data: bytes, content_type: str, complete: bool, problems: list[str]) -> Body:
    lowered = content_type.lower()
    if lowered.startswith("multipart/"):
        multipart = read_multipart(data, content_type)
        if multipart is None:
            problems.append("a multipart body without boundary")
            return Body(BINARY, data, False, tuple(problems))
        return Body(MULTIPART, data, complete, tuple(problems), multipart=multipart)
    tried = (  # JSON by its type or first character, or text with a byte-order mark or in
        "json" in lowered  # UTF-16/32
        or _JSON_START.match(data) is not None
        or json.detect_encoding(data[:4]) != "utf-8"
    )
    if tried:
        codec, mark = decode.json_encoding(data)
        text = decode.json_text(data)
        if text is not None:
            found = _json(text, codec, mark, data, complete, problems)
            if found is not None:
                return found
    text = decode.text_of(data)
    if text is None and not complete:
        text = _cut_utf8(data)
    if text is None:
        problems.append("a binary body")
        return Body(BINARY, data, False, tuple(problems))
    stripped = text.strip()
    if not tried and stripped[:1] in "{[":
        found = _json(text, "utf-8", b"", data, complete, problems)
        if found is not None:
            return found
    if "x-www-form-urlencoded" in lowered or looks_like_form(stripped):
        return Body(FORM, data, complete, tuple(problems), text=stripped)
    return Body(TEXT, data, complete, tuple(problems), text=text)


def _json(
    text: str, codec: str, mark: bytes, data: bytes, complete: bool, problems: list[str]
) -> Body | None:
    """A JSON body: the document inside its frame (whitespace, or what str.strip removes)."""
    start, end = len(text) - len(text.lstrip()), len(text.rstrip())
    stripped = text[start:end] if start or end < len(text) else text
    if stripped[:1] not in "{[":
        return None
    try:
        document = json.loads(stripped)
    except RecursionError:
        if "JSON nested too deep" not in problems:
            problems.append("JSON nested too deep")
        return None
    except ValueError:
        return None
    if not isinstance(document, (dict, list)):
        return None
    frame = text[:start], text[end:]
    return Body(JSON, data, complete, tuple(problems), stripped, document, codec, mark, frame)


def _cut_utf8(data: bytes) -> str | None:
    """Text of a body cut in the middle of a UTF-8 character (a capped body)."""
    if not data or data[-1] < 0x80:  # it ends with an ASCII character: not cut in one
        return None
    for drop in (1, 2, 3):
        text = decode.text_of(data[:-drop])
        if text is not None:
            return text
    return None


# -- multipart ---------------------------------------------------------------------------------


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

    @property
    def is_file(self) -> bool:
        return self.disposition[1] is not None

    @property
    def text(self) -> str | None:
        """The content of a field part as text; None for a file part or binary content."""
        return None if self.is_file else decode.text_of(self.content)


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
