"""Host globs: parsing, matching, site attribution and mitmproxy's `allow_hosts` pattern.

Glob semantics (README, *Sites*): `taobao.com` matches that host only; `*.taobao.com` matches the
domain and every subdomain; `*` may only stand as a whole leftmost label. Matching is
case-insensitive, ignores a trailing dot and any port.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from publicsuffixlist import PublicSuffixList

from shopguard.engine.memory import remembered, urlsplit

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


@lru_cache(maxsize=1)
def suffixes() -> PublicSuffixList:
    """The public suffix list (the copy the publicsuffixlist package ships), loaded once."""
    return PublicSuffixList()


@remembered(1024)
def registrable_domain(host: str) -> str:
    """The registrable domain of `host` (`h5api.m.taobao.com` -> `taobao.com`); the host itself
    where there is none (an IP address, a bare suffix)."""
    host = host.lower().rstrip(".")
    return suffixes().privatesuffix(host) or host


class GlobError(ValueError):
    """A host glob that cannot be used; the message says what was expected."""


@dataclass(frozen=True)
class HostGlob:
    """One parsed glob: `domain` itself, and with `wildcard` also all of its subdomains."""

    text: str
    domain: str
    wildcard: bool

    def matches(self, host: str) -> bool:
        """Whether a normalised host falls under this glob."""
        if host == self.domain:
            return True
        return self.wildcard and host.endswith("." + self.domain)

    def covers(self, other: HostGlob) -> bool:
        """Whether every host of `other` is also a host of this glob."""
        if other.wildcard and not self.wildcard:
            return False
        return self.matches(other.domain)


def parse_glob(text: str) -> HostGlob:
    """Parse a host glob, raising GlobError with a user-facing reason."""
    if not isinstance(text, str) or not text.strip():
        raise GlobError("empty host glob (expected e.g. 'taobao.com' or '*.taobao.com')")
    raw = text.strip().lower().rstrip(".")
    if "://" in raw or "/" in raw or ":" in raw:
        raise GlobError(
            f"invalid host glob {text!r}: a host name only, no scheme, port or path "
            "(expected e.g. '*.taobao.com')"
        )
    wildcard = raw.startswith("*.")
    domain = raw[2:] if wildcard else raw
    labels = domain.split(".")
    if "*" in domain:
        raise GlobError(
            f"invalid host glob {text!r}: '*' may only stand as a whole leftmost label "
            "(expected e.g. '*.taobao.com')"
        )
    bad = [label for label in labels if not _LABEL.match(label)]
    if bad:
        raise GlobError(f"invalid host glob {text!r}: {bad[0]!r} is not a valid host label")
    if len(labels) < 2:
        raise GlobError(
            f"invalid host glob {text!r}: too broad, name at least a registrable domain "
            "(e.g. '*.lazada.sg', not '*.sg')"
        )
    return HostGlob(text=text, domain=domain, wildcard=wildcard)


def normalize_host(host: str) -> str:
    """Lower-case a host, drop a port, brackets and a trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        return host[1:end] if end > 0 else host[1:]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def host_of_url(url: str) -> str | None:
    """The normalised host of an absolute URL (e.g. a Referer), or None."""
    try:
        netloc = urlsplit(url).hostname
    except ValueError:
        return None
    return normalize_host(netloc) if netloc else None


def allow_hosts_pattern(globs: Iterable[HostGlob]) -> str:
    """One anchored regex for mitmproxy's `allow_hosts`, matched against `host:port`.

    mitmproxy applies `re.search` to each pattern, so without anchors `taobao.com` would also
    match `taobao.com.evil.example`. An empty set yields a pattern that never matches.
    """
    globs = list(globs)
    exact = sorted({g.domain for g in globs if not g.wildcard})
    wild = sorted({g.domain for g in globs if g.wildcard})
    alternatives = []
    if wild:
        alternatives.append(r"(?:[^.:/\[\]]+\.)*(?:" + "|".join(map(re.escape, wild)) + ")")
    if exact:
        alternatives.append("(?:" + "|".join(map(re.escape, exact)) + ")")
    if not alternatives:
        return r"(?!)"
    return r"^(?:" + "|".join(alternatives) + r")\.?(?::\d+)?$"


@dataclass(frozen=True)
class SiteHosts:
    """The host globs of one site, as needed for scope decisions."""

    name: str
    hosts: tuple[HostGlob, ...]
    first_party: tuple[HostGlob, ...]
    referred_only: bool = False  # only requests whose Origin/Referer is another site's

    def is_first_party(self, host: str) -> bool:
        return any(g.matches(host) for g in self.first_party)


class GlobIndex[T]:
    """Items filed under host globs, found for a host in O(number of labels) dictionary lookups
    instead of one glob test per item."""

    def __init__(self, entries: Iterable[tuple[HostGlob, T]]) -> None:
        self._exact: dict[str, list[tuple[int, T]]] = {}
        self._wild: dict[str, list[tuple[int, T]]] = {}
        self.size = 0
        for position, (glob, item) in enumerate(entries):
            table = self._wild if glob.wildcard else self._exact
            table.setdefault(glob.domain, []).append((position, item))
            self.size += 1

    def matching(self, host: str) -> list[tuple[int, T]]:
        """(position, item) of every item whose glob matches `host`."""
        host = normalize_host(host)
        found = list(self._exact.get(host, ()))
        suffix = host
        while suffix:
            found.extend(self._wild.get(suffix, ()))
            _, _, suffix = suffix.partition(".")
        return found


SEEN_HOSTS = 4096


class HostIndex:
    """Finds the sites listing a host."""

    def __init__(self, sites: Sequence[SiteHosts]) -> None:
        self.sites = tuple(sites)
        self._globs = GlobIndex((glob, site) for site in self.sites for glob in site.hosts)
        # what was found for the hosts seen last: a browsing session asks the same few again and
        # again (bounded: names of at most 253 characters, as DNS has them, SEEN_HOSTS of them)
        self._seen: dict[str, tuple[SiteHosts, ...]] = {}

    def sites_for(self, host: str) -> tuple[SiteHosts, ...]:
        """Every site listing `host`, in configuration order."""
        found = self._seen.get(host)
        if found is None:
            matching = sorted(self._globs.matching(host))
            found = tuple({id(site): site for _, site in matching}.values())
            if len(host) <= 253:
                if len(self._seen) >= SEEN_HOSTS:
                    self._seen.clear()
                self._seen[host] = found
        return found

    def attribute(self, host: str, *context_urls: str | None) -> SiteHosts | None:
        """The site a request to `host` belongs to.

        A host listed by several sites belongs to the site of the first context URL (Origin,
        then Referer) whose host is listed by one of them; otherwise to the first site listing it.
        """
        candidates = self.sites_for(host)
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        for url in context_urls:
            context_host = host_of_url(url) if url else None
            if not context_host:
                continue
            for site in self.sites_for(context_host):
                if site in candidates:
                    return site
        return candidates[0]


def route(
    index: HostIndex,
    host: str,
    origin: str | None,
    referer: str | None,
    last_page: str | None = None,
) -> tuple[SiteHosts, str | None] | None:
    """The site that handles a request, and for a referred-only site (ad pixels) the site whose
    page sent it; None when no site handles it (a pixel fired from anywhere else). A host several
    sites share goes, failing Origin and Referer, to the site of `last_page` (the marketplace
    page the same client loaded last), then to the first site listing it."""
    site = index.attribute(host, origin, referer, last_page)
    if site is None or not site.referred_only:
        return (site, None) if site is not None else None
    for url in (origin, referer):
        context = host_of_url(url) if url else None
        sender = index.attribute(context) if context else None
        if sender is not None and not sender.referred_only:
            return site, sender.name
    return None


def overlaps(sites: Sequence[SiteHosts]) -> list[tuple[HostGlob, SiteHosts, HostGlob, SiteHosts]]:
    """Pairs of globs of different sites that share hosts (first listed site first)."""
    found = []
    for i, first in enumerate(sites):
        for second in sites[i + 1 :]:
            for a in first.hosts:
                for b in second.hosts:
                    if a.covers(b) or b.covers(a):
                        found.append((a, first, b, second))
    return found
