"""Masking of values before they reach the log: query values, error messages."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from urllib.parse import unquote_plus

MASK = "***"


def mask_path(
    path: str, segments: Collection[int] = (), names: Mapping[str, str] | None = None
) -> str:
    """A request path with every query value replaced by `***` (empty values kept), and every
    query name that is, or may be, a value masked (see `mask_name`).

    `/h5/api/1.0/?jsv=2.7&data={"phone":"138"}` -> `/h5/api/1.0/?jsv=***&data=***`; the
    non-empty path segments numbered in `segments` (0-based, as `path:N` locations) are masked,
    and so are the parameter names in `names` (a name that is personal data -> its mask).
    """
    base, sep, query = path.partition("?")
    if ";" in base:  # path parameters (`/item;jsessionid=1;mobile=…`): their values are masked
        base = _PATH_PARAM.sub(lambda m: f"{m.group(1)}{MASK}" if m.group(2) else m.group(1), base)
    if segments:
        parts = base.split("/")
        index = -1
        for position, part in enumerate(parts):
            if part:
                index += 1
                if index in segments:
                    parts[position] = MASK
        base = "/".join(parts)
    if not sep:
        return base
    parts = []
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        if eq or not name:
            name = mask_name(name, names)
        else:  # a bare token (`?wang.xiaoming@example.com`) is in a value's place: masked
            name = names.get(unquote_plus(name), MASK) if names else MASK
        parts.append(f"{name}{eq}{MASK if value else ''}")
    return f"{base}?{'&'.join(parts)}"


_PATH_PARAM = re.compile(r"(;[^;=/]*=)([^;/]*)")

# A name that may itself be a value: an @, a run of five digits, another script, or long
_NAME_VALUE = re.compile(r"@|\d{5}|[^\x00-\x7f]|.{65}")


def mask_name(name: str, names: Mapping[str, str] | None = None) -> str:
    """A query, form or cookie name as the log writes it: its mask when detection found it is
    personal data (`names`: name -> mask), `***` when it looks like a value, else itself
    (`spm`, `p1`)."""
    key = unquote_plus(name)
    if names and (shown := names.get(key)) is not None:
        return shown
    return MASK if _NAME_VALUE.search(key) else name


# A label as DNS names have them (and `_`, seen in real hosts), without a long run of digits;
# anything else in a Host header is written `***` whether or not detection named it
_LABEL = re.compile(r"(?!.*\d{7})[A-Za-z0-9_-]{1,63}")
_PORT = re.compile(r"\d{1,5}")


def mask_host(host: str, labels: Collection[int]) -> str:
    """A host with the labels numbered in `labels` (0-based, leftmost first, as `host:N`
    locations) written `***`: `13800138000.shop.example` -> `***.shop.example`; so is any
    label that is not one a DNS name can have, and a port that is not a number."""
    name, colon, port = host.partition(":") if host.count(":") == 1 else (host, "", "")
    parts = name.split(".")
    port_ok = not colon or _PORT.fullmatch(port) is not None
    if not labels and port_ok and all(_LABEL.fullmatch(part) for part in parts if part):
        return host
    masked = ".".join(
        MASK if index in labels or (part and not _LABEL.fullmatch(part)) else part
        for index, part in enumerate(parts)
    )
    return f"{masked}{colon}{port if port_ok else MASK}"


# Request methods as the HTTP and WebDAV RFCs name them; any other token is written `***`
METHODS = frozenset(
    {
        *("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "PRI"),
        *("PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH"),
    }
)


def mask_method(method: str) -> str:
    """A request method as the log shows it: a standard one as it is, anything else `***`
    (a client can send any token there, a phone number included)."""
    return method if method in METHODS else MASK


def host_labels(locations: Iterable[str]) -> set[int]:
    """The host labels that carry a finding, from the findings' locations (`host:N`)."""
    return {int(loc[5:]) for loc in locations if loc.startswith("host:") and loc[5:].isdigit()}


# Anything that may be a value: quoted text, e-mail or URL-like tokens, anything with a digit,
# and non-ASCII words (names and addresses in CJK scripts).
# Both patterns are linear: negated classes only, no nested repetition to backtrack over.
_QUOTED = re.compile(r"'[^']+'|\"[^\"]+\"")
_TOKEN = re.compile(r"[^\s,;:()\[\]{}<>=]+")
_VALUE_LIKE = re.compile(r"[\d@%]|[^\x00-\x7f]")
_PROTOCOL = re.compile(r"HTTP/[123](?:\.[01])?")  # kept: says which protocol failed


def mask_message(text: str, limit: int = 300) -> str:
    """An exception message safe for the log: values masked, length bounded.

    Tracebacks and exception messages can carry the very data shopguard must not write
    (`KeyError: '13800138000'`), so quoted parts and value-like tokens are replaced.
    """
    text = _QUOTED.sub(lambda m: f"{m.group(0)[0]}{MASK}{m.group(0)[0]}", text)
    text = _TOKEN.sub(
        lambda m: (
            m.group(0)
            if not _VALUE_LIKE.search(m.group(0)) or _PROTOCOL.fullmatch(m.group(0))
            else MASK
        ),
        text,
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"
