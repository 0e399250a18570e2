"""Host globs, site attribution and the `allow_hosts` pattern handed to mitmproxy."""

from __future__ import annotations

import re

import pytest

from shopguard.engine.hosts import (
    SEEN_HOSTS,
    GlobError,
    HostIndex,
    SiteHosts,
    allow_hosts_pattern,
    normalize_host,
    overlaps,
    parse_glob,
)


def site(name: str, hosts: list[str], first_party: list[str] | None = None) -> SiteHosts:
    return SiteHosts(
        name,
        tuple(map(parse_glob, hosts)),
        tuple(map(parse_glob, first_party if first_party is not None else hosts)),
    )


def matches(glob: str, host: str) -> bool:
    return parse_glob(glob).matches(normalize_host(host))


def allowed(pattern: str, host_port: str) -> bool:
    """What mitmproxy's next_layer does with each `allow_hosts` entry."""
    return re.search(pattern, host_port, re.IGNORECASE) is not None


# --- parsing and matching -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "host", "expected"),
    [
        # exact
        ("taobao.com", "taobao.com", True),
        ("taobao.com", "www.taobao.com", False),
        ("ynuf.aliapp.org", "ynuf.aliapp.org", True),
        ("ynuf.aliapp.org", "x.ynuf.aliapp.org", False),
        ("ynuf.aliapp.org", "aliapp.org", False),
        # the domain and every subdomain
        ("*.taobao.com", "taobao.com", True),
        ("*.taobao.com", "www.taobao.com", True),
        ("*.taobao.com", "h5api.m.taobao.com", True),
        ("*.lazada.com.my", "www.lazada.com.my", True),
        ("*.lazada.com.my", "lazada.com", False),
        # look-alikes stay out of scope
        ("*.taobao.com", "taobao.com.evil.example", False),
        ("*.taobao.com", "www.taobao.com.evil.example", False),
        ("*.taobao.com", "eviltaobao.com", False),
        ("*.taobao.com", "evil-taobao.com", False),
        ("*.taobao.com", "taobao.comx", False),
        ("*.taobao.com", "taobaoxcom", False),
        ("taobao.com", "taobao.com.evil.example", False),
        ("taobao.com", "eviltaobao.com", False),
        ("taobao.com", "taobao.comx", False),
        # case-insensitive, trailing dot ignored, any port
        ("*.TaoBao.COM", "www.taobao.com", True),
        ("*.taobao.com", "WWW.TAOBAO.COM", True),
        ("TAOBAO.COM", "taobao.com", True),
        ("taobao.com.", "taobao.com", True),
        ("*.taobao.com", "www.taobao.com.", True),
        ("taobao.com", "TAOBAO.COM.", True),
        ("*.taobao.com", "www.taobao.com:443", True),
        ("taobao.com", "taobao.com:8443", True),
        ("*.taobao.com", "WWW.TAOBAO.COM.:443", True),
    ],
)
def test_glob_matches(glob: str, host: str, expected: bool) -> None:
    assert matches(glob, host) is expected


@pytest.mark.parametrize(
    ("glob", "message"),
    [
        ("*taobao.com", r"'\*' may only stand as a whole leftmost label"),
        ("a.*.com", r"'\*' may only stand as a whole leftmost label"),
        ("*.*.taobao.com", r"'\*' may only stand as a whole leftmost label"),
        ("**.taobao.com", r"'\*' may only stand as a whole leftmost label"),
        ("taobao.*", r"'\*' may only stand as a whole leftmost label"),
        ("*", r"'\*' may only stand as a whole leftmost label"),
        ("*.com", "too broad"),
        ("*.sg", "too broad"),
        ("com", "too broad"),
        ("https://www.taobao.com", "no scheme, port or path"),
        ("www.taobao.com:443", "no scheme, port or path"),
        ("www.taobao.com/cart", "no scheme, port or path"),
        ("*.taobao.com/*.gif", "no scheme, port or path"),
        ("", "empty host glob"),
        ("   ", "empty host glob"),
        ("tao bao.com", "not a valid host label"),
        ("-taobao.com", "not a valid host label"),
        ("taobao..com", "not a valid host label"),
    ],
)
def test_bad_globs_are_rejected_with_a_reason(glob: str, message: str) -> None:
    with pytest.raises(GlobError, match=message):
        parse_glob(glob)


def test_glob_keeps_the_text_the_user_wrote() -> None:
    glob = parse_glob("*.TaoBao.com.")
    assert (glob.text, glob.domain, glob.wildcard) == ("*.TaoBao.com.", "taobao.com", True)


# --- mitmproxy's allow_hosts ----------------------------------------------------------------

CONFIGURED = ["*.taobao.com", "ynuf.aliapp.org", "*.lazada.com.my", "*.aliexpress-media.com"]


@pytest.mark.parametrize(
    "host_port",
    [
        "www.taobao.com:443",
        "taobao.com:443",
        "h5api.m.taobao.com:443",
        "TAOBAO.COM.:443",
        "Www.TaoBao.Com:80",
        "www.taobao.com.:8443",
        "ynuf.aliapp.org:443",
        "www.lazada.com.my:443",
        "ae01.aliexpress-media.com:443",
    ],
)
def test_allow_hosts_pattern_lets_configured_hosts_through(host_port: str) -> None:
    pattern = allow_hosts_pattern(map(parse_glob, CONFIGURED))
    re.compile(pattern)
    assert allowed(pattern, host_port)


@pytest.mark.parametrize(
    "host_port",
    [
        "taobao.com.evil.example:443",
        "www.taobao.com.evil.example:443",
        "eviltaobao.com:443",
        "evil-taobao.com:443",
        "taobao.comx:443",
        "taobaoxcom:443",
        "evil.example:443",
        "x.ynuf.aliapp.org:443",
        "aliapp.org:443",
        "ynufxaliapp.org:443",
        "lazada.com:443",
        "aliexpress-mediaxcom:443",
        "127.0.0.1:8080",
        "[::1]:443",
        "::1:443",
        "www.taobao.com:443.evil.example:443",
    ],
)
def test_allow_hosts_pattern_is_anchored(host_port: str) -> None:
    pattern = allow_hosts_pattern(map(parse_glob, CONFIGURED))
    assert not allowed(pattern, host_port)


@pytest.mark.parametrize(
    "host_port", ["www.taobao.com:443", "127.0.0.1:8080", "", ":443", "localhost:80"]
)
def test_allow_hosts_pattern_of_no_sites_never_matches(host_port: str) -> None:
    pattern = allow_hosts_pattern([])
    re.compile(pattern)
    assert not allowed(pattern, host_port)


def test_allow_hosts_pattern_of_an_exact_host_excludes_its_subdomains() -> None:
    pattern = allow_hosts_pattern([parse_glob("taobao.com")])
    assert allowed(pattern, "taobao.com:443")
    assert not allowed(pattern, "www.taobao.com:443")


# --- attribution ----------------------------------------------------------------------------

TAOBAO = site("taobao", ["*.taobao.com", "*.alicdn.com"], ["*.taobao.com"])
ALIEXPRESS = site("aliexpress", ["*.aliexpress.com", "*.alicdn.com"], ["*.aliexpress.com"])
JD = site("jd", ["*.jd.com"])
INDEX = HostIndex([TAOBAO, ALIEXPRESS, JD])


@pytest.mark.parametrize(
    ("host", "origin", "referer", "expected"),
    [
        ("www.taobao.com", None, None, "taobao"),
        ("WWW.TAOBAO.COM.:443", None, None, "taobao"),
        ("www.aliexpress.com", None, None, "aliexpress"),
        ("evil.example", None, None, None),
        ("taobao.com.evil.example", None, "https://www.taobao.com/", None),
        # a host listed by one site belongs to it, whoever refers to it
        ("www.taobao.com", "https://www.aliexpress.com", None, "taobao"),
        # shared host: the first site listing it, unless Origin or Referer say otherwise
        ("g.alicdn.com", None, None, "taobao"),
        ("g.alicdn.com", None, "https://www.aliexpress.com/item/1.html", "aliexpress"),
        ("g.alicdn.com", "https://www.aliexpress.com", None, "aliexpress"),
        ("g.alicdn.com", "https://WWW.ALIEXPRESS.COM:443", None, "aliexpress"),
        ("g.alicdn.com", None, "https://item.taobao.com/item.htm?id=1", "taobao"),
        # Origin before Referer
        (
            "g.alicdn.com",
            "https://www.taobao.com",
            "https://www.aliexpress.com/item/1.html",
            "taobao",
        ),
        (
            "g.alicdn.com",
            "https://www.aliexpress.com",
            "https://www.taobao.com/",
            "aliexpress",
        ),
        # an Origin that names none of the candidates falls through to the Referer
        ("g.alicdn.com", "null", "https://www.aliexpress.com/", "aliexpress"),
        ("g.alicdn.com", "https://www.jd.com", "https://www.aliexpress.com/", "aliexpress"),
        ("g.alicdn.com", "https://evil.example", None, "taobao"),
        ("g.alicdn.com", "not a url", "http://[broken", "taobao"),
    ],
)
def test_attribute(host: str, origin: str | None, referer: str | None, expected: str) -> None:
    found = INDEX.attribute(host, origin, referer)
    assert (found.name if found else None) == expected


def test_sites_for_lists_every_site_in_configuration_order() -> None:
    assert [s.name for s in INDEX.sites_for("img.alicdn.com")] == ["taobao", "aliexpress"]
    assert [s.name for s in HostIndex([ALIEXPRESS, TAOBAO]).sites_for("g.alicdn.com")] == [
        "aliexpress",
        "taobao",
    ]
    assert INDEX.sites_for("alicdn.com.evil.example") == ()


def test_what_sites_for_remembers_is_bounded_and_right() -> None:
    index = HostIndex([ALIEXPRESS, TAOBAO])
    for n in range(SEEN_HOSTS + 10):
        assert [s.name for s in index.sites_for(f"h{n}.alicdn.com")] == ["aliexpress", "taobao"]
        assert index.sites_for(f"h{n}.example.com") == ()
        assert len(index._seen) <= SEEN_HOSTS
    long = "a" * 60 + "." + "b" * 250 + ".alicdn.com"
    assert [s.name for s in index.sites_for(long)] == ["aliexpress", "taobao"]
    assert long not in index._seen  # (a name no DNS has is not kept)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("www.taobao.com", True),
        ("taobao.com", True),
        ("g.alicdn.com", False),
        ("www.aliexpress.com", False),
    ],
)
def test_first_party(host: str, expected: bool) -> None:
    assert TAOBAO.is_first_party(host) is expected


# --- overlaps -------------------------------------------------------------------------------


def overlap_names(sites: list[SiteHosts]) -> list[tuple[str, str, str, str]]:
    return [(a.text, s.name, b.text, t.name) for a, s, b, t in overlaps(sites)]


def test_overlaps_reports_shared_globs_first_site_first() -> None:
    assert overlap_names([TAOBAO, ALIEXPRESS, JD]) == [
        ("*.alicdn.com", "taobao", "*.alicdn.com", "aliexpress")
    ]


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        (["*.mmstat.com"], ["gm.mmstat.com"], True),
        (["gm.mmstat.com"], ["*.mmstat.com"], True),
        (["mmstat.com"], ["*.mmstat.com"], True),
        (["gm.mmstat.com"], ["gm.mmstat.com"], True),
        (["*.a.mmstat.com"], ["*.mmstat.com"], True),
        (["gm.mmstat.com"], ["log.mmstat.com"], False),
        (["*.gm.mmstat.com"], ["log.mmstat.com"], False),
        (["*.mmstat.com"], ["*.mmstat.com.cn"], False),
        (["*.taobao.com"], ["*.eviltaobao.com"], False),
    ],
)
def test_overlaps_between_two_sites(first: list[str], second: list[str], shared: bool) -> None:
    assert bool(overlaps([site("a", first), site("b", second)])) is shared


def test_globs_of_one_site_do_not_overlap_with_themselves() -> None:
    assert overlaps([site("a", ["*.taobao.com", "www.taobao.com"])]) == []
