"""`shopguard policy import`: a site's policy from ClearURLs providers or Adblock-syntax lists.

Only what concerns the site is read: a ClearURLs provider whose URL pattern names one of the
site's hosts, an Adblock line whose `||host` or `$domain=` does. What shopguard can express
becomes `trackers.block`, `trackers.strip_params` or `allow`; everything else that concerns the
site is listed as unsupported (in the YAML as comments, and on stderr), never dropped silently.
Lines about other sites are only counted. A site that is not configured gets a complete site
file whose hosts are the site's own domains named by the rules (`--site ebay`: `*.ebay.com`…).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from publicsuffixlist import PublicSuffixList

from shopguard import paths
from shopguard.cli.common import load_or_report
from shopguard.cli.exits import EXIT_OK, EXIT_USAGE
from shopguard.engine.hosts import GlobError, HostGlob, parse_glob
from shopguard.engine.policy import parse_pattern
from shopguard.engine.settings import Site

KINDS = ("clearurls", "abp")
_SITE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_LABELS = re.compile(r"^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$")
_MAX_SHOWN = 160  # characters of a rule quoted in a comment or message


class ImportFailure(ValueError):
    """Input that cannot be imported at all; the message says where and why."""


@lru_cache(maxsize=1)
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()


# -- domains named by rules ----------------------------------------------------------------------


@dataclass(frozen=True)
class Dom:
    """A domain a rule names: `labels` itself, with `sub` also its subdomains, and with `any_tld`
    under any top-level domain (`aliexpress` + `.com`, `.us`, `.co.uk`…)."""

    labels: str
    sub: bool = True
    any_tld: bool = False

    def holds(self, host: str) -> bool:
        """Whether `host` is one of this domain's hosts."""
        if not self.any_tld:
            return host == self.labels or (self.sub and host.endswith("." + self.labels))
        head = self.labels + "."
        if host.startswith(head) and len(host) > len(head):
            return True
        at = host.find("." + head)
        return self.sub and at >= 0 and len(host) > at + len(head) + 1

    def within(self, glob: HostGlob) -> str | None:
        """The part of this domain's hosts under `glob`, as a host glob; None when none is."""
        if self.holds(glob.domain):
            if self.sub or not glob.wildcard:
                return glob.text
            return glob.domain
        if not self.any_tld:
            if glob.matches(self.labels):
                return f"*.{self.labels}" if self.sub else self.labels
            return None
        mine, theirs = self.labels.split("."), glob.domain.split(".")
        for cut in range(1, len(mine)):  # `fls-na.amazon` + glob `amazon.co.uk`
            tail = mine[cut:]
            if theirs[: len(tail)] == tail and len(theirs) > len(tail):
                host = ".".join(mine[:cut] + theirs)
                if glob.matches(host):
                    return f"*.{host}" if self.sub else host
        return None

    @property
    def text(self) -> str:
        return self.labels + (".*" if self.any_tld else "")


def _dom(text: str, sub: bool = True) -> Dom | None:
    """`taobao.com`, `aliexpress.*` (uBO entity) or `aliexpress.` (host prefix) as a Dom."""
    text = text.strip().lower().rstrip("|")
    any_tld = False
    if text.startswith("*."):
        text = text[2:]
    if text.endswith(".*"):
        text, any_tld = text[:-2], True
    elif text.endswith("."):
        text, any_tld = text[:-1], True
    if not _LABELS.match(text):
        return None
    return Dom(text, sub, any_tld)


@dataclass(frozen=True)
class _Scope:
    """The hosts of the site being imported into."""

    globs: tuple[HostGlob, ...]
    first_party: tuple[HostGlob, ...]

    def globs_for(self, dom: Dom) -> list[str]:
        found: list[str] = []
        for glob in self.globs:
            part = dom.within(glob)
            if part is not None and part not in found:
                found.append(part)
        return found

    def concerns(self, dom: Dom) -> bool:
        return bool(self.globs_for(dom))

    def mentions(self, pattern: str) -> bool:
        """Whether a pattern shopguard cannot read names one of the site's domains."""
        plain = pattern.lower().replace("\\", "")
        return any(glob.domain in plain for glob in self.globs)

    def first_party_glob(self, text: str) -> bool:
        try:
            glob = parse_glob(text)
        except GlobError:
            return False
        return any(fp.covers(glob) for fp in self.first_party)


def _own_hosts(name: str, doms: Iterable[Dom]) -> list[str]:
    """Host globs for a site that is not configured: the registrable domains named by the rules
    whose first label is the site's name (`--site ebay`: `*.ebay.com`, `*.ebay.co.uk`)."""
    found: list[str] = []
    for dom in doms:
        if dom.any_tld:
            continue
        registrable = _suffixes().privatesuffix(dom.labels)
        if registrable and registrable.split(".")[0] == name:
            glob = f"*.{registrable}"
            if glob not in found:
                found.append(glob)
    return found


def _scope(site: Site, doms: Iterable[Dom], source: str) -> tuple[_Scope, list[str]]:
    """The site's hosts, derived from the rules' domains when the site has none."""
    if site.hosts:
        return _Scope(site.hosts, site.first_party), []
    hosts = _own_hosts(site.name, doms)
    if not hosts:
        raise ImportFailure(
            f"site {site.name!r} is not configured and no rule in {source} names one of its "
            f"hosts (a domain such as {site.name}.com): create sites/{site.name}.yaml with its "
            "hosts first, or pick a configured site"
        )
    globs = tuple(parse_glob(h) for h in hosts)
    return _Scope(globs, globs), hosts


def new_site(name: str) -> Site:
    """A site that is not configured: its hosts are derived from the rules."""
    return Site(name, True, (), (), None, "", 0)


# -- what an import produces -------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    value: str
    note: str = ""  # written as a comment above the entry


@dataclass(frozen=True)
class Unsupported:
    where: str  # "line 12" or 'provider "amazon"'
    text: str
    reason: str

    def comment(self) -> str:
        return f"unsupported ({self.where}): {_shown(self.text)} — {self.reason}"


@dataclass
class Imported:
    """The rules of one source that concern one site."""

    kind: str
    source: str  # the file's name, for comments and messages
    block: list[Entry] = field(default_factory=list)
    strip_params: dict[str, list[Entry]] = field(default_factory=dict)  # host glob -> names
    allow: list[Entry] = field(default_factory=list)
    unsupported: list[Unsupported] = field(default_factory=list)
    skipped: int = 0  # rules or providers about other sites
    hosts: list[str] = field(default_factory=list)  # derived hosts of a site not configured

    @property
    def imported(self) -> int:
        return len(self.block) + len(self.allow) + sum(map(len, self.strip_params.values()))

    def add_block(self, value: str, note: str) -> None:
        if all(e.value != value for e in self.block):
            self.block.append(Entry(value, note))

    def add_strip(self, key: str, value: str, note: str) -> None:
        entries = self.strip_params.setdefault(key, [])
        if all(e.value != value for e in entries):
            entries.append(Entry(value, note))

    def add_allow(self, value: str, note: str) -> None:
        if all(e.value != value for e in self.allow):
            self.allow.append(Entry(value, note))

    def summary(self, listed: str = "") -> str:
        unit = "providers" if self.kind == "clearurls" else "lines"
        return (
            f"{self.imported} rule{'s' * (self.imported != 1)} imported, "
            f"{len(self.unsupported)} unsupported{listed if self.unsupported else ''}, "
            f"{self.skipped:,} {unit} about other sites skipped"
        )


def _shown(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


# -- ClearURLs -----------------------------------------------------------------------------------

_CU_PREFIX = re.compile(r"\^?https\?:(?:\\/|/){2}")
_CU_SUBDOMAINS = re.compile(r"\((?:\?:)?\[[a-z0-9\\.-]+\][*+]?(?:\\\.)?\)(?:[*+?]\??)?")
_CU_TLD = re.compile(r"\((?:\?:)?\\\.\[a-z\]\{2,\}\)(?:\{1,\}|\+)")
_ANY_TLD, _END = "\x00", "\x01"
_PLAIN_RULE = re.compile(r"^[A-Za-z0-9_-]+$")


class _Unparsed(Exception):
    pass


def _alternatives(text: str, i: int = 0, depth: int = 0) -> tuple[list[str], int]:
    """The strings a small regex (literals, escapes, groups with `|` and `?`, `[ab]`, the TLD
    idiom) stands for; raises _Unparsed at anything else."""
    branches: list[str] = []
    current = [""]
    while i < len(text):
        char = text[i]
        if char == ")":
            if depth == 0:
                raise _Unparsed
            break
        if char == "|":
            branches += current
            current, i = [""], i + 1
            continue
        tld = _CU_TLD.match(text, i)
        group = False
        if tld:
            pieces, i = [_ANY_TLD], tld.end()
        elif char == "(":
            if text.startswith("(?", i) and not text.startswith("(?:", i):
                raise _Unparsed
            pieces, i = _alternatives(text, i + (3 if text.startswith("(?:", i) else 1), depth + 1)
            if i >= len(text) or text[i] != ")":
                raise _Unparsed
            i, group = i + 1, True
            if text.startswith("?", i):
                pieces, i = [*pieces, ""], i + 1
        elif char == "\\":
            if i + 1 >= len(text) or text[i + 1] not in "./-?:_&=":
                raise _Unparsed
            pieces, i = [text[i + 1]], i + 2
        elif char == "[":
            end = text.find("]", i)
            if end < 0 or not re.fullmatch(r"[a-z0-9]{1,8}", text[i + 1 : end]):
                raise _Unparsed
            pieces, i = list(text[i + 1 : end]), end + 1
        elif char == "$":
            pieces, i = [_END], i + 1
        elif char.isascii() and (char.isalnum() or char in "-_./"):
            pieces, i = [char], i + 1
        else:
            raise _Unparsed
        if i < len(text) and (text[i] in "*+{" or (text[i] == "?" and not group)):
            raise _Unparsed
        current = [a + p for a in current for p in pieces]
        if len(current) > 256:
            raise _Unparsed
    branches += current
    return branches, i


@dataclass(frozen=True)
class _ProviderUrl:
    """What a provider's urlPattern covers: hosts, each with a path prefix glob or None."""

    targets: tuple[tuple[Dom, str | None], ...] = ()
    complex_path: bool = False  # a path shopguard cannot express
    generic: bool = False  # every URL (`globalRules`)


def _provider_url(pattern: str) -> _ProviderUrl | None:
    """The hosts and paths of a ClearURLs urlPattern; None when it cannot be read."""
    if pattern.strip() in (".*", "^.*", ""):
        return _ProviderUrl(generic=True)
    prefix = _CU_PREFIX.match(pattern)
    if prefix is None:
        return None
    rest = pattern[prefix.end() :]
    sub = _CU_SUBDOMAINS.match(rest)
    if sub:
        rest = rest[sub.end() :]
    cut = _top_level_slash(rest)
    host_part, path_part = rest[:cut], rest[cut:]
    try:
        hosts = _alternatives(host_part)[0]
    except _Unparsed:
        return None
    paths_: list[str | None] = [None]
    complex_path = False
    if path_part:
        try:
            paths_ = [_path_prefix(p) for p in _alternatives(path_part)[0]]
        except _Unparsed:
            complex_path = True
    targets: list[tuple[Dom, str | None]] = []
    paths_ = [None if p == "/*" else p for p in paths_]
    for host in hosts:
        host = host.lower().rstrip(_END)
        any_tld = host.endswith(_ANY_TLD)
        labels = host.rstrip(_ANY_TLD)
        if not _LABELS.match(labels):
            return None
        for path in paths_:
            targets.append((Dom(labels, sub is not None, any_tld), path))
    return _ProviderUrl(tuple(targets), complex_path)


def _top_level_slash(text: str) -> int:
    """Where the host part of a regex ends: its first `/` outside groups, else its end."""
    depth, i = 0, 0
    while i < len(text):
        char = text[i]
        if char == "\\" and text.startswith("\\/", i) and depth == 0:
            return i
        if char == "\\":
            i += 2
            continue
        if char == "/" and depth == 0:
            return i
        depth += {"(": 1, ")": -1}.get(char, 0)
        i += 1
    return len(text)


def _path_prefix(path: str) -> str:
    if _ANY_TLD in path or _END in path.rstrip(_END) or not path.startswith("/"):
        raise _Unparsed
    return path.rstrip(_END) if path.endswith(_END) else path + "*"


def _clearurls_rule(rule: str) -> str | None:
    """A ClearURLs rule as a strip_params entry: ClearURLs tests `^rule$` against each
    parameter name, ignoring case (`new RegExp("^"+rule+"$", "gi")`)."""
    if _PLAIN_RULE.match(rule):
        return rule
    regex = f"(?i)^(?:{rule})$"
    try:
        re.compile(regex)
    except re.error:
        return None
    return f"/{regex}/"


def _providers(data: Any) -> dict[str, dict[str, Any]]:
    """The providers of a ClearURLs rules file, checked; ImportFailure names what is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("providers"), dict):
        raise ImportFailure('expected ClearURLs rules: {"providers": {NAME: {"urlPattern": …}}}')
    providers: dict[str, dict[str, Any]] = {}
    for name, spec in data["providers"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("urlPattern"), str):
            raise ImportFailure(f'provider "{name}": expected an object with a "urlPattern" text')
        for key in ("rules", "referralMarketing", "rawRules", "exceptions", "redirections"):
            value = spec.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ImportFailure(f'provider "{name}": "{key}" must be a list of texts')
        providers[str(name)] = spec
    return providers


def from_clearurls(data: Any, site: Site, source: str = "data.min.json") -> Imported:
    """The ClearURLs providers of `data` that concern `site`, as shopguard rules."""
    providers = _providers(data)
    urls = {name: _provider_url(spec["urlPattern"]) for name, spec in providers.items()}
    doms = (dom for url in urls.values() if url for dom, _ in url.targets)
    scope, hosts = _scope(site, doms, source)
    out = Imported("clearurls", source, hosts=hosts)
    for name, spec in providers.items():
        _provider(name, spec, urls[name], scope, out)
    return out


def _provider(
    name: str, spec: Mapping[str, Any], url: _ProviderUrl | None, scope: _Scope, out: Imported
) -> None:
    where = f'provider "{name}"'
    pattern: str = spec["urlPattern"]
    if url is None:
        if scope.mentions(pattern) or _pattern_hits(pattern, scope):
            out.unsupported.append(Unsupported(where, pattern, "urlPattern too complex to convert"))
        else:
            out.skipped += 1
        return
    targets = [(glob, path) for dom, path in url.targets for glob in scope.globs_for(dom)]
    if url.generic or not targets:
        out.skipped += 1
        return
    note = f'ClearURLs provider "{name}"'
    names = [*spec.get("rules", []), *spec.get("referralMarketing", [])]
    limited = url.complex_path or any(path is not None for _, path in targets)
    if names and limited:
        out.unsupported.append(
            Unsupported(
                where,
                f"{pattern} rules: {', '.join(names)}",
                "its rules apply to some paths only; strip_params cannot be limited to a path",
            )
        )
    elif names:
        for rule in names:
            entry = _clearurls_rule(rule)
            if entry is None:
                out.unsupported.append(Unsupported(where, rule, "rule is not a valid regex here"))
                continue
            for glob, _ in targets:
                out.add_strip(glob, entry, note)
    if spec.get("completeProvider") is True:
        if url.complex_path:
            out.unsupported.append(
                Unsupported(where, pattern, "completeProvider with a path pattern too complex")
            )
        for glob, path in targets if not url.complex_path else []:
            _add_pattern(out, f"{glob}{path or ''}", f"{note} (completeProvider)", where, pattern)
    for key, reason in (
        ("rawRules", "rawRules rewrite the URL text; shopguard only strips named parameters"),
        ("redirections", "redirections (unwrapping redirect URLs) are not supported"),
        ("exceptions", "exceptions are not supported: the rules above apply there too"),
    ):
        for item in spec.get(key, []):
            out.unsupported.append(Unsupported(where, f"{key}: {item}", reason))
    methods = spec.get("methods")
    if methods:
        out.unsupported.append(
            Unsupported(where, f"methods: {methods}", "rules limited to HTTP methods")
        )


def _pattern_hits(pattern: str, scope: _Scope) -> bool:
    """Whether a regex shopguard cannot read matches the home page of one of the site's hosts."""
    try:
        regex = re.compile(pattern, re.IGNORECASE)
    except re.error:
        return False
    return any(
        regex.search(f"https://{prefix}{glob.domain}/")
        for glob in scope.globs
        for prefix in ("", "www.")
    )


def _add_pattern(out: Imported, text: str, note: str, where: str, rule: str) -> bool:
    """Add a block pattern when shopguard can read it, else list the rule as unsupported."""
    try:
        parse_pattern(text)
    except GlobError as exc:
        out.unsupported.append(Unsupported(where, rule, f"no valid shopguard pattern: {exc}"))
        return False
    out.add_block(text, note)
    return True


# -- Adblock syntax (ABP, uBlock Origin, AdGuard) ------------------------------------------------

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


def _parse_abp(text: str, line: int) -> _Filter | None:
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
    dom = _dom(host.group(1) + (host.group(2) or ""), sub) if host else None
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
        dom = _dom(item.lstrip("~"))
        if dom is None:
            into.problem = into.problem or f"domain {item!r} not understood"
            continue
        (into.not_domains if negated else into.domains).append(dom)


def from_abp(lines: Iterable[str], site: Site, source: str = "filters.txt") -> Imported:
    """The Adblock-syntax lines that concern `site`, as shopguard rules."""
    filters = [f for number, text in enumerate(lines, 1) if (f := _parse_abp(text, number))]
    doms = (d for f in filters for d in ([f.dom] if f.dom else []) + f.domains)
    scope, hosts = _scope(site, doms, source)
    out = Imported("abp", source, hosts=hosts)
    for found in filters:
        _convert(found, scope, out)
    return out


def _convert(found: _Filter, scope: _Scope, out: Imported) -> None:
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
        if found.kind in ("regex", "plain") and scope.mentions(found.text):
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
    return f"line {found.line}: {_shown(found.text)}" + (f" ({extra})" if extra else "")


def _party(found: _Filter, scope: _Scope, globs: list[str]) -> tuple[list[str], str]:
    """The globs a `$third-party` / `$first-party` rule still applies to on the site's pages."""
    names = {k for k, _ in found.options}
    if names & _THIRD:  # the same on the site's pages, as long as the host is not its own
        return [g for g in globs if not scope.first_party_glob(g)], ""
    if names & _FIRST:
        kept = [g for g in globs if scope.first_party_glob(g)]
        return kept, "$first-party: blocked wherever the site's requests come from"
    return globs, ""


def _block(
    found: _Filter, scope: _Scope, out: Imported, unsupported: Callable[[str], None]
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
        _add_pattern(out, glob + path, _comment(found, notes), f"line {found.line}", found.text)


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
    found: _Filter, scope: _Scope, out: Imported, unsupported: Callable[[str], None]
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
    found: _Filter, scope: _Scope, out: Imported, unsupported: Callable[[str], None]
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


# -- YAML ----------------------------------------------------------------------------------------


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON's syntax, with YAML's line breaks escaped too)."""
    quoted = json.dumps(text, ensure_ascii=False)
    return "".join(
        c if c.isprintable() else f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"
        for c in quoted
    )


def _comment_line(indent: str, text: str) -> str:
    return f"{indent}# " + " ".join(text.split())


def _entries(entries: list[Entry], indent: str, prefix: str = "- ") -> list[str]:
    lines: list[str] = []
    last = None
    for entry in entries:
        if entry.note and entry.note != last:
            lines.append(_comment_line(indent, entry.note))
        last = entry.note
        lines.append(f"{indent}{prefix}{_q(entry.value)}")
    return lines


def _strip_lines(imported: Imported) -> list[str]:
    lines = ["  strip_params:"]
    for key, entries in imported.strip_params.items():
        lines += [f"    {_q(key)}:", *_entries(entries, "      ")]
    return lines


def render(imported: Imported, site: Site, shipped: bool) -> str:
    """The site file for `imported`: laid over the shipped site (`extends: default`), else a
    complete site file."""
    stem = site.name  # shipped and generated site files are named after their site
    hosts = [g.text for g in site.hosts] or imported.hosts
    first_party = [g.text for g in site.first_party] if site.hosts else imported.hosts
    lines = [
        f"# generated by `shopguard policy import {imported.kind} {imported.source} "
        f"--site {site.name}`",
        f"# {imported.summary(' (listed at the end)')}",
    ]
    if imported.kind == "clearurls" and imported.strip_params:
        lines.append("# ClearURLs ignores case in names; exact names here match as written")
    if shipped:
        lines += [
            f"# save as sites/{stem}.yaml in your config directory: it adds to the shipped site",
            "extends: default",
        ]
    else:
        if site.hosts:
            lines.append(
                f"# a complete site file: merge it into your sites/{stem}.yaml by hand "
                "(saving it under that name replaces that file)"
            )
        else:
            lines.append(f"# a new site: save as sites/{stem}.yaml in your config directory")
        lines += [f"site: {_q(site.name)}", "hosts:", *(f"  - {_q(h)}" for h in hosts)]
        if first_party:
            lines += ["first_party:", *(f"  - {_q(h)}" for h in first_party)]
    if imported.block or imported.strip_params:
        lines.append("trackers:")
        if imported.block:
            lines += ["  block:", *_entries(imported.block, "    ")]
        if imported.strip_params:
            lines += _strip_lines(imported)
    if imported.allow:
        lines += ["allow:", *_entries(imported.allow, "  ", "- match: ")]
    if imported.unsupported:
        lines.append(
            f"# {len(imported.unsupported)} rules about this site that shopguard cannot express:"
        )
        lines += [_comment_line("", u.comment()) for u in imported.unsupported]
    return "\n".join(lines) + "\n"


# -- the command ---------------------------------------------------------------------------------


def _fail(message: str) -> int:
    print(f"shopguard: {message}", file=sys.stderr)
    return EXIT_USAGE


def _read(kind: str, path: Path) -> Any:
    """The file's ClearURLs JSON or Adblock lines; ImportFailure says what is wrong where."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFailure(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFailure(f"{path}:{line}: not UTF-8 text") from exc
    if kind == "clearurls":
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportFailure(
                f"{path}:{exc.lineno}: invalid JSON (column {exc.colno}: {exc.msg})"
            ) from exc
        _providers(parsed)  # fails early, before the configuration is read
        return parsed
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ImportFailure(f"{path}:{line}: binary data, not an Adblock filter list")
    if text.lstrip().startswith("{"):
        raise ImportFailure(
            f"{path}:1: JSON, not an Adblock filter list (ClearURLs? use clearurls)"
        )
    return text.split("\n")  # not splitlines(): line numbers as editors count them


def _shipped(name: str) -> bool:
    """Whether `name` is a shipped site (its file, `sites/NAME.yaml`, is among the defaults)."""
    return (paths.shipped_config_dir() / "sites" / f"{name}.yaml").is_file()


def _report_failure(path: Path, exc: ImportFailure) -> int:
    text = str(exc)
    return _fail(text if path.name in text else f"{path}: {text}")


def import_rules(args: argparse.Namespace) -> int:
    """`shopguard policy import (clearurls|abp) FILE --site NAME [-o OUT]`."""
    kind: str = args.kind
    path: Path = Path(args.file)
    name: str = args.site
    output: Path | None = args.output
    if kind not in KINDS:
        return _fail(f"unknown rule format {kind!r} (expected {' or '.join(KINDS)})")
    if not _SITE_NAME.match(name):
        return _fail(f"--site: expected a lower-case site name like 'taobao', got {name!r}")
    if output is not None and output.exists():
        return _fail(f"{output} exists: not overwritten (remove it or pick another -o file)")
    try:
        content = _read(kind, path)
    except ImportFailure as exc:
        return _report_failure(path, exc)
    config = load_or_report(args.config)
    if config is None:
        return EXIT_USAGE
    site = config.site(name) or new_site(name)
    try:
        if kind == "clearurls":
            imported = from_clearurls(content, site, path.name)
        else:
            imported = from_abp(content, site, path.name)
    except ImportFailure as exc:
        return _report_failure(path, exc)
    text = render(imported, site, _shipped(name))
    for item in imported.unsupported:
        where = item.where.removeprefix("line ")
        location = f"{path}:{where}" if where != item.where else f"{path}: {where}"
        print(f"{location}: unsupported: {_shown(item.text)} — {item.reason}", file=sys.stderr)
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            with output.open("x", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            return _fail(f"cannot write {output}: {exc.strerror or exc}")
    print(f"{path.name} -> site {name}: {imported.summary(' (listed above)')}", file=sys.stderr)
    return EXIT_OK
