"""The model of an import into one site: the domains rules name, the site's hosts, the results."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from shopguard.engine.hosts import GlobError, HostGlob, parse_glob, suffixes
from shopguard.engine.policy import parse_pattern
from shopguard.engine.settings import Site

_LABELS = re.compile(r"^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$")
_MAX_SHOWN = 160  # characters of a rule quoted in a comment or message


class ImportFailure(ValueError):
    """Input that cannot be imported at all; the message says where and why."""


# -- domains named by rules ----------------------------------------------------------------------


@dataclass(frozen=True)
class Dom:
    """A domain a rule names: `labels` itself, with `sub` also its subdomains, and with `any_tld`
    under any top-level domain (`aliexpress` + `.com`, `.us`, `.co.uk`…)."""

    labels: str
    sub: bool = True
    any_tld: bool = False

    @classmethod
    def named(cls, labels: str, sub: bool = True, any_tld: bool = False) -> Dom | None:
        """The Dom of `labels` when they are lower-case domain labels, else None."""
        return cls(labels, sub, any_tld) if _LABELS.match(labels) else None

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


def parse_dom(text: str, sub: bool = True) -> Dom | None:
    """`taobao.com`, `aliexpress.*` (uBO entity) or `aliexpress.` (host prefix) as a Dom."""
    text = text.strip().lower().rstrip("|")
    any_tld = False
    if text.startswith("*."):
        text = text[2:]
    if text.endswith(".*"):
        text, any_tld = text[:-2], True
    elif text.endswith("."):
        text, any_tld = text[:-1], True
    return Dom.named(text, sub, any_tld)


# -- the site imported into ----------------------------------------------------------------------


@dataclass(frozen=True)
class ImportScope:
    """The hosts of the site being imported into."""

    globs: tuple[HostGlob, ...]
    first_party: tuple[HostGlob, ...]

    def globs_for(self, dom: Dom) -> list[str]:
        """The parts of the site's hosts that `dom` names, as host globs."""
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
        registrable = suffixes().privatesuffix(dom.labels)
        if registrable and registrable.split(".")[0] == name:
            glob = f"*.{registrable}"
            if glob not in found:
                found.append(glob)
    return found


def scope_for(site: Site, doms: Iterable[Dom], source: str) -> tuple[ImportScope, list[str]]:
    """The site's hosts, and the host globs derived from the rules' domains when it has none."""
    if site.hosts:
        return ImportScope(site.hosts, site.first_party), []
    hosts = _own_hosts(site.name, doms)
    if not hosts:
        raise ImportFailure(
            f"site {site.name!r} is not configured and no rule in {source} names one of its "
            f"hosts (a domain such as {site.name}.com): create sites/{site.name}.yaml with its "
            "hosts first, or pick a configured site"
        )
    globs = tuple(parse_glob(h) for h in hosts)
    return ImportScope(globs, globs), hosts


def new_site(name: str) -> Site:
    """A site that is not configured: its hosts are derived from the rules."""
    return Site(name, True, (), (), None, "", 0)


# -- what an import produces ---------------------------------------------------------------------


def shown(text: str) -> str:
    """A rule as quoted in a comment or message: on one line, cut at _MAX_SHOWN characters."""
    text = " ".join(text.split())
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


@dataclass(frozen=True)
class Entry:
    value: str
    note: str = ""  # written as a comment above the entry


@dataclass(frozen=True)
class Unsupported:
    """A rule about the site that shopguard cannot express, listed rather than dropped."""

    where: str  # "line 12" or 'provider "amazon"'
    text: str
    reason: str

    def message(self) -> str:
        return f"{shown(self.text)} — {self.reason}"

    def comment(self) -> str:
        return f"unsupported ({self.where}): {self.message()}"


@dataclass
class Imported:
    """The rules of one source that concern one site: what shopguard can express becomes
    `trackers.block`, `trackers.strip_params` or `allow`; everything else that concerns the site
    is listed as unsupported, never dropped silently; rules about other sites are only counted."""

    kind: str  # "clearurls" or "abp"
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

    def add_pattern(self, text: str, note: str, where: str, rule: str) -> None:
        """Block `text` when shopguard can read it as a pattern, else list `rule` as unsupported."""
        try:
            parse_pattern(text)
        except GlobError as exc:
            self.unsupported.append(Unsupported(where, rule, f"no valid shopguard pattern: {exc}"))
            return
        self.add_block(text, note)

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
