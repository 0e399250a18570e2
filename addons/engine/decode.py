"""Bounded decoders for the layers values hide under: compression, percent, base64, hex, escapes.

Every function here returns None instead of raising, and never produces more than it is allowed
to: a decompression bomb or a huge blob costs at most `limit` bytes of work.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import re
import zlib

import brotli  # type: ignore[import-untyped,unused-ignore]

try:  # Python 3.14
    from compression import zstd  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the Python version
    from backports import zstd  # type: ignore[import-not-found,no-redef,unused-ignore]


def decompress(data: bytes, encoding: str, limit: int) -> tuple[bytes, bool] | None:
    """Undo one Content-Encoding; returns (bytes, truncated) or None when it cannot be decoded."""
    encoding = encoding.strip().lower()
    try:
        if encoding in ("gzip", "x-gzip", "deflate"):
            wbits = 47 if encoding != "deflate" else 15
            try:
                inflater = zlib.decompressobj(wbits)
                out = inflater.decompress(data, limit)
            except zlib.error:
                if encoding != "deflate":
                    raise
                inflater = zlib.decompressobj(-15)  # raw deflate, as some servers send it
                out = inflater.decompress(data, limit)
            return out, bool(inflater.unconsumed_tail)
        if encoding == "br":
            decompressor = brotli.Decompressor()
            out = decompressor.process(data, output_buffer_limit=limit)
            return out[:limit], len(out) >= limit and not decompressor.is_finished()
        if encoding == "zstd":
            zdecompressor = zstd.ZstdDecompressor()
            out = zdecompressor.decompress(data, max_length=limit)
            return out, not zdecompressor.eof
        if encoding in ("identity", ""):
            return data[:limit], len(data) > limit
    except Exception:  # every codec raises its own error type on bad input
        return None
    return None


def text_of(data: bytes) -> str | None:
    """Bytes as text when they are UTF-8 of (nearly all) printable characters or spaces (an
    ideographic or no-break space is not "printable" to Python); None for binary."""
    if not data:
        return ""
    # the common case, printable ASCII, is found by C loops over the bytes
    if data.isascii() and len(data.translate(None, _ASCII_CONTROLS)) == len(data):
        return data.decode("ascii")
    # bytes that are not UTF-8 become lone surrogates instead of raising: most guesses at
    # base64 or hex give random bytes, and an exception costs more than the decoding
    text = data.decode("utf-8", "surrogateescape")
    if not text.isprintable():
        if _ESCAPED.search(text):
            return None
        controls = sum(1 for ch in text if not ch.isprintable() and not ch.isspace())
        if controls > len(text) // 50:
            return None
    return text


_ASCII_CONTROLS = bytes(range(32)) + b"\x7f"  # the ASCII characters that are not printable
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_B64 = re.compile(r"^[A-Za-z0-9+/]{12,}={0,2}$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]{12,}={0,2}$")
_HEX = re.compile(r"[0-9a-fA-F]{12,}")
_UNICODE_ESCAPE = re.compile(r"\\u[0-9a-fA-F]{4}")
_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


_PERCENT_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


def unquote(value: str, plus: bool = False, errors: str = "replace") -> str:
    """Percent-decoding, as urllib's `unquote` (or `unquote_plus`), an order of magnitude faster.

    With every `%` starting a valid escape, `%XX` is quoted-printable's `=XX` once the literal
    `=` are escaped, and binascii decodes that in C; otherwise runs are decoded one by one.
    """
    if plus:
        value = value.replace("+", " ")
    if "%" not in value:
        return value
    if value.isascii() and "\n" not in value and "\r" not in value:  # (=CRLF: a soft break)
        quoted = value.replace("=", "=3D").replace("%", "=").encode("ascii")
        raw = binascii.a2b_qp(quoted)
        # each escape shortens the text by two; a `%` that starts none leaves it longer
        if len(raw) == len(quoted) - 2 * (value.count("%") + value.count("=")):
            return raw.decode("utf-8", errors)
    return _PERCENT_RUN.sub(
        lambda m: bytes.fromhex(m.group(0).replace("%", "")).decode("utf-8", errors), value
    )


def percent(value: str) -> str | None:
    """Percent-decoded text, if the value has escapes that decode to valid UTF-8."""
    if "%" not in value or not _PERCENT.search(value):
        return None
    try:
        decoded = unquote(value, errors="strict")
    except UnicodeDecodeError:
        return None
    return decoded if decoded != value else None


def b64(value: str) -> tuple[str, str] | None:
    """(text, label) for a base64 or base64url value that decodes to text; else None."""
    if len(value) < 12 or len(value) % 4 == 1 or len(value) > 1_000_000:
        return None  # 12 characters carry 9 bytes: less holds no phone, e-mail or full name
    if _B64.match(value):
        label, alphabet = "base64", None
    elif _B64URL.match(value):
        label, alphabet = "base64url", b"-_"
    else:
        return None
    if value.isdigit() or (value.isalpha() and (value.islower() or value.isupper())):
        return None  # plain numbers and words are not base64 in practice
    padded = value + "=" * (-len(value) % 4)
    try:
        raw = base64.b64decode(padded, altchars=alphabet, validate=True)
    except (binascii.Error, ValueError):
        return None
    text = text_of(raw)
    if not text or len(text) < 3:
        return None
    return text, label


WRAP = 4  # the longest prefix or suffix a vendor puts around base64 (`T2gA…`, `…#1`)


def b64_wrapped(value: str) -> tuple[str, str] | None:
    """Base64 (or base64url) of JSON or a form behind a short vendor prefix or before a short
    suffix, at most `WRAP` characters each: at most 2 x `WRAP` more decodings, and only text
    with structure counts (random bytes often decode to a few printable characters)."""
    if len(value) < 16 or len(value) > 1_000_000:
        return None
    for start, end in [(a, 0) for a in range(1, WRAP + 1)] + [(0, b) for b in range(1, WRAP + 1)]:
        found = b64(value[start : len(value) - end])
        if found is not None:
            text = found[0].lstrip()
            if text[:1] in "{[" or ("=" in text and "&" in text):
                return found
    return None


def is_hex(value: str) -> bool:
    """Hex digits in pairs, at least 12 of them (what `hexa` will try)."""
    return not len(value) % 2 and _HEX.fullmatch(value) is not None


def hexa(value: str) -> str | None:
    """Text of a hex-encoded value (e.g. `77616e67…`), if it decodes to printable text."""
    if not is_hex(value) or value.isdigit():
        return None
    text = text_of(bytes.fromhex(value))
    return text if text and len(text) >= 4 and text.isprintable() else None


def unicode_escapes(value: str) -> str | None:
    """`\\u738b\\u5c0f` outside JSON, as some trackers double-escape."""
    if "\\u" not in value or not _UNICODE_ESCAPE.search(value):
        return None
    return _UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(0)[2:], 16)), value)


_MARKS = (  # (UTF-32's little-endian mark begins with UTF-16's: it is looked for first)
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
)


def json_encoding(data: bytes) -> tuple[str, bytes]:
    """The encoding of a body if it is JSON, and its byte-order mark (b"" without one), as JSON
    readers detect them: UTF-8 (with or without a mark), UTF-16, UTF-32."""
    for mark, codec in _MARKS:
        if data.startswith(mark):
            return codec, mark
    return json.detect_encoding(data), b""


def json_text(data: bytes) -> str | None:
    """A body's text in its JSON encoding, without the mark, decoded strictly (json.loads on
    bytes would let UTF-8-encoded surrogates through); None if it does not decode."""
    codec, mark = json_encoding(data)
    try:
        return data[len(mark) :].decode(codec)
    except UnicodeDecodeError:
        return None
