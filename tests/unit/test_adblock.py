"""Adblock-syntax lines that concern a site become its blocks, allows and strip_params; every
other line about the site is listed with its line number."""

from __future__ import annotations

from pathlib import Path

from shopguard.engine.adblock import from_abp
from shopguard.engine.imported import new_site
from shopguard.engine.sitefile import render
from tests.support.imports import (
    EASYPRIVACY,
    MADE_UP,
    SHORTENER,
    lines,
    load_user_file,
    shipped,
    strips,
    values,
)


def test_abp_host_and_path_rules_block_the_sites_hosts() -> None:
    imported = from_abp(lines(EASYPRIVACY), shipped("taobao"))
    assert values(imported.block) == [
        "*.mmstat.com",
        "*.alicdn.com/tkapi/click.js*",
        "*.click.taobao.com",
        "*.taobao.com/tracker.*",
        "*.alicdn.com/AWSC/et/*",
        "collect.alipay.com",
        "*.gj.mmstat.com",
    ]
    assert "line 12: ||click.taobao.com^$script ($script:" in imported.block[2].note
    assert imported.allow == [] and imported.unsupported == []
    # &action=js_stats, ecommstats.com, alibaba.com, ltwebstatic.com, the aliexpress exception
    assert imported.skipped == 5


def test_abp_exception_becomes_allow_for_its_own_site_only() -> None:
    aliexpress = from_abp(lines(EASYPRIVACY), shipped("aliexpress"))
    assert values(aliexpress.allow) == ["*.mmstat.com/eg.js*"]
    assert "*.aliexpress.com" not in values(aliexpress.block)
    shein = from_abp(lines(EASYPRIVACY), shipped("shein"))
    assert values(shein.block) == ["*.ltwebstatic.com/*/libs/sensors/*"]
    assert shein.allow == []


def test_abp_removeparam_becomes_strip_params() -> None:
    imported = from_abp(lines(SHORTENER), shipped("aliexpress"), "lus.txt")
    found = strips(imported)
    assert found["*.aliexpress.com"] == ["sk", "_t", "gps-id"]
    assert found["*.aliexpress.us"] == ["sk", "_t", "gps-id"]
    assert "*.mmstat.com" not in found  # `||aliexpress.` and `domain=aliexpress.*` only
    assert [(u.where, u.text) for u in imported.unsupported] == [
        ("line 7", "||aliexpress.*/item/$removeparam=pvid")  # a path: strip_params cannot
    ]
    # the generic _ga rule, baidu (2), shein, temu
    assert imported.skipped == 5


def test_abp_removeparam_regex_for_a_new_site(tmp_path: Path) -> None:
    baidu = new_site("baidu")
    imported = from_abp(lines(SHORTENER), baidu)
    assert imported.hosts == ["*.baidu.com"]
    assert strips(imported) == {"*.baidu.com": ["/^rsv.*/", "euri"]}
    loaded = load_user_file(tmp_path, "baidu", render(imported, baidu, shipped=False))
    assert [g.text for g in loaded.hosts] == ["*.baidu.com"]
    assert [r.matches("rsv_pq") for r in loaded.policy.strip_params] == [True, False]
    assert [r.matches("xrsv") for r in loaded.policy.strip_params] == [False, False]


def test_unsupported_syntax_is_listed_with_its_line() -> None:
    imported = from_abp(MADE_UP.splitlines(), shipped("taobao"))
    reasons = {int(u.where.split()[1]): u.reason for u in imported.unsupported}
    assert sorted(reasons) == [2, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15]
    assert reasons[2].startswith("cosmetic rule")
    assert reasons[5].startswith("regex rule")
    assert reasons[6] == "option $redirect is not supported"
    assert reasons[7] == "option $csp is not supported"
    assert reasons[8].startswith("$domain= rule without a host")
    assert reasons[9].startswith("@@ exception for a whole host")
    assert reasons[11].startswith("$third-party for the site's own")
    assert reasons[12].startswith("pattern after the host not understood")
    assert reasons[13].startswith("$removeparam without a name")
    assert reasons[14].startswith("$removeparam regex tested against name=value")
    assert reasons[15].startswith("$domain=~")
    assert values(imported.block) == ["*.log.mmstat.com"]  # once, though written twice
    assert values(imported.allow) == ["*.log.mmstat.com/eg.js*"]
    assert imported.skipped == 3  # example.org, the generic cosmetic rule, other.example
    text = render(imported, shipped("taobao"), shipped=True)
    assert "# unsupported (line 6): ||log.mmstat.com^$redirect=1x1.gif — option $redirect" in text
    assert text.count("# unsupported (line ") == 11


def test_every_regex_line_that_may_concern_the_site_is_listed_with_its_line() -> None:
    filters = [
        r"/mmstat\.(com|net)\/v\.gif/",  # the site's domain, written with a group
        r"/taobao[.]com\/tracker/",  # … with a character class
        r"/\/track\.gif\?/$image",  # any host: may match the site's requests too
        r"/^https?:\/\/www\.example\.org\/track/",  # another site's host only
        r"/track/$domain=other.example",  # on another site's pages only
        r"/^https?:\/\/([a-z]+\.)?mmstat\.com\//$third-party",
    ]
    imported = from_abp(filters, shipped("taobao"))
    assert [u.where for u in imported.unsupported] == ["line 1", "line 2", "line 3", "line 6"]
    assert all(u.reason.startswith("regex rule") for u in imported.unsupported)
    assert imported.skipped == 2
