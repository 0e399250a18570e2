"""Adblock-syntax lines (ABP, uBlock Origin, AdGuard) that concern one site, as an Imported."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shopguard.engine.hosts import GlobError, suffixes
from shopguard.engine.imported import (
    Dom,
    Imported,
    ImportScope,
    Unsupported,
    parse_dom,
    scope_for,
    shown,
)
from shopguard.engine.policy import parse_pattern
from shopguard.engine.settings import Site

_COSMETIC = re.compile(r"#@?(?:\$\?|[?$%])?#|\$@?\$")  # ##, #@#, #?#, #$#, #%#, $$…
_DOMAIN_LIST = re.compile(r"^[a-z0-9.*~,_-]*$", re.IGNORECASE)
_OPTION_START = re.compile(r"^~?[a-z0-9_-]+(?:=|,|$)", re.IGNORECASE)
_OPTION_NAME = re.compile(r"~?[a-z0-9_-]+", re.IGNORECASE)
_HOST = re.compile(r"(?:\*\.)?([a-z0-9_-]+(?:\.[a-z0-9_-]+)*)(\.\*|\.)?", re.IGNORECASE)
_TYPES = {
    "script", "image", "xmlhttprequest", "xhr", "ping", "beacon", "subdocument", "frame",
    "stylesheet", "css", "font", "media", "object", "other", "websocket", "document", "doc",
    "all", "fetch",
}  # fmt: skip
_THIRD = {"third-party", "3p", "strict3p", "~first-party", "~1p"}
_FIRST = {"first-party", "1p", "strict1p", "~third-party", "~3p"}
_HARMLESS = {"important", "match-case", "domain", "from", "removeparam", "queryprune"}


@dataclass
class _Filter:
    """One Adblock line, parsed as far as shopguard needs."""

    line: int
    text: str
    kind: str  # cosmetic | regex | host | plain | generic
    exception: bool = False
    dom: Dom | None = None  # `||host` or `|https://host`
    rest: str = ""  # what follows the host
    domains: list[Dom] = field(default_factory=list)  # $domain= (or the cosmetic prefix)
    not_domains: list[Dom] = field(default_factory=list)
    options: list[tuple[str, str | None]] = field(default_factory=list)
    problem: str = ""  # syntax shopguard cannot read, when the line concerns the site


def _split_options(text: str) -> tuple[str, str]:
    """`pattern$options` -> (pattern, options); a regex pattern may itself contain `$`."""
    start = 0
    while (at := text.find("$", start)) >= 0:
        pattern, options = text[:at], text[at + 1 :]
        is_regex = pattern.startswith("/")
        if _OPTION_START.match(options) and (not is_regex or pattern.endswith("/")):
            return pattern, options
        start = at + 1
    return text, ""


def _options(text: str) -> list[tuple[str, str | None]]:
    """`a,b=c,removeparam=/x,y/i` -> [(a, None), (b, c), (removeparam, /x,y/i)]."""
    found: list[tuple[str, str | None]] = []
    i = 0
    while i < len(text):
        name = _OPTION_NAME.match(text, i)
        if name is None:
            raise ValueError(f"option not understood at {text[i:]!r}")
        key, i, value = name.group().lower(), name.end(), None
        if text.startswith("=", i):
            i += 1
            if text.startswith("/", i) and key in ("removeparam", "queryprune"):
                end = _regex_end(text, i)
                value, i = text[i:end], end
            else:
                end = text.find(",", i)
                end = len(text) if end < 0 else end
                value, i = text[i:end], end
        found.append((key, value))
        if i < len(text):
            if text[i] != ",":
                raise ValueError(f"option not understood at {text[i:]!r}")
            i += 1
    return found


def _regex_end(text: str, start: int) -> int:
    """The end of `/regex/flags` starting at `start`."""
    i, in_class = start + 1, False
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "/" and not in_class:
            i += 1
            while i < len(text) and text[i] in "gimsuy":
                i += 1
            return i
        i += 1
    raise ValueError(f"unterminated regex {text[start:]!r}")


def _parse_line(text: str, line: int) -> _Filter | None:
    """One line; None for comments, blank lines and headers."""
    raw = text.strip()
    if not raw or raw.startswith("!") or (raw.startswith("[") and raw.endswith("]")):
        return None
    cosmetic = _COSMETIC.search(raw)
    if cosmetic and _DOMAIN_LIST.match(raw[: cosmetic.start()]):
        found = _Filter(line, raw, "cosmetic")
        _domains(raw[: cosmetic.start()].split(","), found)
        return found
    body = raw[2:] if raw.startswith("@@") else raw
    pattern, option_text = _split_options(body)
    found = _Filter(line, raw, "generic", exception=raw.startswith("@@"))
    try:
        found.options = _options(option_text)
    except ValueError as exc:
        found.problem = str(exc)
    for key, value in found.options:
        if key in ("domain", "from") and value:
            _domains(value.split("|"), found)
    if pattern in ("", "*"):
        return found
    if len(pattern) > 1 and pattern.startswith("/") and pattern.endswith("/"):
        found.kind = "regex"
        return found
    if pattern.startswith("||"):
        anchored, sub = pattern[2:], True
    elif pattern.lower().startswith(("|http://", "|https://")):
        anchored, sub = pattern.split("://", 1)[1], False
    else:
        found.kind = "plain"
        return found
    host = _HOST.match(anchored)
    dom = parse_dom(host.group(1) + (host.group(2) or ""), sub) if host else None
    if host is None or dom is None:
        found.kind = "plain"
        return found
    found.kind, found.dom, found.rest = "host", dom, anchored[host.end() :]
    return found


def _domains(items: Iterable[str], into: _Filter) -> None:
    for item in items:
        item = item.strip()
        if not item:
            continue
        negated = item.startswith("~")
        dom = parse_dom(item.lstrip("~"))
        if dom is None:
            into.problem = into.problem or f"domain {item!r} not understood"
            continue
        (into.not_domains if negated else into.domains).append(dom)


def from_abp(lines: Iterable[str], site: Site, source: str = "filters.txt") -> Imported:
    """The Adblock-syntax lines that concern `site`, as shopguard rules."""
    filters = [f for number, text in enumerate(lines, 1) if (f := _parse_line(text, number))]
    doms = (d for f in filters for d in ([f.dom] if f.dom else []) + f.domains)
    scope, hosts = scope_for(site, doms, source)
    out = Imported("abp", source, hosts=hosts)
    for found in filters:
        _convert(found, scope, out)
    return out


def _convert(found: _Filter, scope: ImportScope, out: Imported) -> None:
    where = f"line {found.line}"

    def unsupported(reason: str) -> None:
        out.unsupported.append(Unsupported(where, found.text, reason))

    site_pages = any(scope.concerns(d) for d in found.domains)
    if found.kind == "cosmetic":
        if site_pages:
            unsupported("cosmetic rule (element hiding or scriptlet): shopguard sees requests only")
        else:
            out.skipped += 1
        return
    if found.dom is None and not found.domains:  # generic, or about the site's URLs only
        regex = found.kind == "regex" and _regex_may_concern(found.text, scope)
        if regex or (found.kind == "plain" and scope.mentions(found.text)):
            unsupported(_PATTERN_REASONS[found.kind])
        else:
            out.skipped += 1
        return
    host_ok = found.dom is None or scope.concerns(found.dom)
    if not host_ok or (found.domains and not site_pages):
        out.skipped += 1
        return
    if found.problem:
        unsupported(found.problem)
        return
    if any(scope.concerns(d) for d in found.not_domains):
        unsupported("$domain=~… leaves out some of the site's pages; shopguard cannot")
        return
    names = [key for key, _ in found.options]
    odd = [n for n in names if n.lstrip("~") not in _TYPES | _HARMLESS and n not in _THIRD | _FIRST]
    if odd:
        unsupported(f"option ${odd[0]} is not supported")
        return
    if found.kind in ("regex", "plain", "generic") and not _removeparam(found):
        unsupported(_PATTERN_REASONS[found.kind])
        return
    if _removeparam(found):
        _strip(found, scope, out, unsupported)
    elif found.exception:
        _exception(found, scope, out, unsupported)
    else:
        _block(found, scope, out, unsupported)


_REGEX_HOST = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)+")


def _regex_may_concern(text: str, scope: ImportScope) -> bool:
    r"""Whether a regular-expression line may match the site's requests. Its hosts cannot be read
    the way `||host` is, so it is only left out as being about other sites when it names hosts
    (`www\.example\.org`) and none of them is the site's; a regex naming no host (`\/track\.gif`,
    `mmstat\.(com|net)`) may match the site's requests as well as any other's."""
    if scope.mentions(text):
        return True
    plain = text.lower().replace("[.]", ".").replace("\\", "")
    named = [
        dom
        for literal in _REGEX_HOST.findall(plain)
        if suffixes().privatesuffix(literal, accept_unknown=False)  # not `v.gif`, `track.js`
        and (dom := parse_dom(literal)) is not None
    ]
    return not named or any(scope.concerns(dom) for dom in named)


_PATTERN_REASONS = {
    "regex": "regex rule: shopguard patterns are host/path globs",
    "plain": "pattern not anchored to a host (shopguard needs ||host)",
    "generic": "$domain= rule without a host: shopguard cannot block by page only",
}


def _removeparam(found: _Filter) -> bool:
    return any(key in ("removeparam", "queryprune") for key, _ in found.options)


def _notes(found: _Filter, strip: bool) -> list[str]:
    """How shopguard's rule differs from the line's options."""
    notes: list[str] = []
    types = [k for k, _ in found.options if k.lstrip("~") in _TYPES and k != "all"]
    if types:
        notes.append(f"${','.join(types)}: shopguard acts on every request type")
    if found.domains and strip and found.dom is None:
        notes.append("$domain=: stripped from requests to these hosts only")
    elif found.domains:
        notes.append("$domain=: shopguard acts on every page of the site")
    return notes


def _comment(found: _Filter, notes: Iterable[str]) -> str:
    extra = "; ".join(notes)
    return f"line {found.line}: {shown(found.text)}" + (f" ({extra})" if extra else "")


def _party(found: _Filter, scope: ImportScope, globs: list[str]) -> tuple[list[str], str]:
    """The globs a `$third-party` / `$first-party` rule still applies to on the site's pages."""
    names = {k for k, _ in found.options}
    if names & _THIRD:  # the same on the site's pages, as long as the host is not its own
        return [g for g in globs if not scope.first_party_glob(g)], ""
    if names & _FIRST:
        kept = [g for g in globs if scope.first_party_glob(g)]
        return kept, "$first-party: blocked wherever the site's requests come from"
    return globs, ""


def _block(
    found: _Filter, scope: ImportScope, out: Imported, unsupported: Callable[[str], None]
) -> None:
    assert found.dom is not None
    path = _path_glob(found.rest)
    if path is None:
        unsupported(f"pattern after the host not understood: {found.rest!r}")
        return
    globs, party = _party(found, scope, scope.globs_for(found.dom))
    if not globs:
        unsupported(
            "$third-party for the site's own (first_party) host: never applies on its pages"
            if {k for k, _ in found.options} & _THIRD
            else "$first-party for a host that is not the site's own: never applies on its pages"
        )
        return
    notes = [*([party] if party else []), *_notes(found, strip=False)]
    for glob in globs:
        out.add_pattern(glob + path, _comment(found, notes), f"line {found.line}", found.text)


def _path_glob(rest: str) -> str | None:
    """What follows `||host` as a shopguard path glob ("" for the whole host)."""
    if rest in ("", "^", "^|", "|", "*", "^*"):
        return ""
    if rest.startswith("^*/"):  # `||host^*/path`: any path containing /path
        rest = "/*" + rest[2:]
    if not rest.startswith("/"):
        return None
    exact = rest.endswith("|")
    rest = rest.rstrip("|")
    if rest.endswith("^"):
        rest, exact = rest[:-1], False
    if "^" in rest or "|" in rest:
        return None
    return rest if exact else rest.rstrip("*") + "*"


def _exception(
    found: _Filter, scope: ImportScope, out: Imported, unsupported: Callable[[str], None]
) -> None:
    assert found.dom is not None
    path = _path_glob(found.rest)
    if not path:
        unsupported("@@ exception for a whole host: add an allow: entry if shopguard breaks it")
        return
    note = _comment(found, ["exception: shopguard leaves these requests untouched"])
    for glob in scope.globs_for(found.dom):
        text = glob + path
        try:
            parse_pattern(text)
        except GlobError as exc:
            unsupported(f"no valid shopguard pattern: {exc}")
            continue
        out.add_allow(text, note)


def _strip(
    found: _Filter, scope: ImportScope, out: Imported, unsupported: Callable[[str], None]
) -> None:
    value = next((v for k, v in found.options if k in ("removeparam", "queryprune")), None)
    if found.exception:
        unsupported("@@ exception for $removeparam: shopguard has no per-parameter exception")
    elif not value:
        unsupported("$removeparam without a name removes every parameter")
    elif value.startswith("~"):
        unsupported("$removeparam=~… keeps one parameter and removes the others")
    elif found.kind != "generic" and (found.kind != "host" or _path_glob(found.rest) != ""):
        unsupported("$removeparam limited to a path: strip_params apply to whole hosts")
    else:
        name = _param_regex(value) if value.startswith("/") else value
        if name is None:
            unsupported("$removeparam regex tested against name=value: no name-only equivalent")
            return
        doms = [found.dom] if found.dom else found.domains
        keys = [g for d in doms for g in scope.globs_for(d)]
        note = _comment(found, _notes(found, strip=True))
        for key in keys:
            out.add_strip(key, name, note)


def _param_regex(value: str) -> str | None:
    """uBO tests a `removeparam=/regex/` against `name=value`; shopguard tests the name. The same
    when the regex is anchored at the start, has no `=` and ends openly (or with `.*$`)."""
    body, _, flags = value[1:].rpartition("/")
    if body.endswith(".*$"):
        body = body[:-1]
    if not body.startswith("^") or "=" in body or "$" in body:
        return None
    regex = ("(?i)" if "i" in flags else "") + body
    try:
        re.compile(regex)
    except re.error:
        return None
    return f"/{regex}/"
