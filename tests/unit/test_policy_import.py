"""`shopguard policy import`: ClearURLs providers and Adblock lines that concern a site become
its policy; everything else about the site is listed, and the YAML loads with the real loader."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from shopguard import paths
from shopguard.cli.policy_import import (
    Dom,
    Entry,
    Imported,
    from_abp,
    from_clearurls,
    import_rules,
    new_site,
    render,
)
from shopguard.engine.hosts import parse_glob
from shopguard.engine.settings import Site, load_config

FIXTURES = Path(__file__).parent.parent / "fixtures" / "import"
CLEARURLS = FIXTURES / "clearurls-sample.json"
EASYPRIVACY = FIXTURES / "easyprivacy-sample.txt"
SHORTENER = FIXTURES / "legitimate-url-shortener-sample.txt"


@pytest.fixture(scope="module")
def shipped() -> dict[str, Site]:
    config = load_config(paths.shipped_config_dir(), None)
    return {site.name: site for site in config.sites}


def clearurls() -> Any:
    return json.loads(CLEARURLS.read_text(encoding="utf-8"))


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def site(name: str, hosts: list[str], first_party: list[str] | None = None) -> Site:
    return Site(
        name,
        True,
        tuple(map(parse_glob, hosts)),
        tuple(map(parse_glob, first_party or [])),
        None,
        "",
        0,
    )


def strips(imported: Imported) -> dict[str, list[str]]:
    return {key: [e.value for e in entries] for key, entries in imported.strip_params.items()}


def values(entries: list[Entry]) -> list[str]:
    return [e.value for e in entries]


def load_user_file(tmp_path: Path, stem: str, text: str) -> Site:
    """Write a generated file into a user config dir and load it over the shipped defaults."""
    user = tmp_path / "user"
    (user / "sites").mkdir(parents=True)
    (user / "sites" / f"{stem}.yaml").write_text(text, encoding="utf-8")
    loaded = load_config(paths.shipped_config_dir(), user).site(stem)
    assert loaded is not None
    return loaded


# -- ClearURLs -----------------------------------------------------------------------------------


def test_clearurls_rules_become_strip_params_of_the_providers_hosts(
    shipped: dict[str, Site],
) -> None:
    imported = from_clearurls(clearurls(), shipped["taobao"])
    found = strips(imported)
    assert list(found) == ["*.taobao.com", "*.tmall.com"]  # not aliexpress, amazon, globalRules
    assert "spm" in found["*.taobao.com"] and "spm" not in found["*.tmall.com"]
    assert "user_number_id" in found["*.tmall.com"]
    regex = "/(?i)^(?:scm[_a-z-]*)$/"  # ClearURLs: "^" + rule + "$", ignoring case
    assert regex in found["*.taobao.com"]
    compiled = re.compile(regex[1:-1])
    assert compiled.search("SCM_ID") and compiled.search("scm")
    assert not compiled.search("xscm") and not compiled.search("scm.x")
    assert imported.skipped == 5 and imported.unsupported == []


def test_clearurls_unsupported_parts_are_listed_not_dropped(tmp_path: Path) -> None:
    amazon = site("amazon", ["*.amazon.com", "*.amazon.de"], ["*.amazon.com", "*.amazon.de"])
    imported = from_clearurls(clearurls(), amazon, "sample.json")
    found = strips(imported)
    assert set(found) == {"*.amazon.com", "*.amazon.de"}
    assert {"qid", "tag", "/(?i)^(?:p[fd]_rd_[a-z]*)$/"} <= set(found["*.amazon.de"])
    # completeProvider: the provider's hosts are blocked (`fls-na.amazon.*` on the site's TLDs)
    assert values(imported.block) == ["*.fls-na.amazon.com", "*.fls-na.amazon.de"]
    listed = [(u.where, u.text) for u in imported.unsupported]
    assert ('provider "amazon"', "rawRules: \\/ref=[^/?]*") in listed
    assert sum(u.text.startswith("exceptions: ") for u in imported.unsupported) == 2
    assert any(w == 'provider "amazon search"' for w, _ in listed)  # rules for /s? only
    text = render(imported, amazon, shipped=False)
    assert '# unsupported (provider "amazon"): rawRules: \\/ref=[^/?]*' in text
    loaded = load_user_file(tmp_path, "amazon", text)
    assert [g.text for g in loaded.hosts] == ["*.amazon.com", "*.amazon.de"]
    rules = [r for r in loaded.policy.strip_params if r.name == "qid"]
    assert [r.hosts.holds("www.amazon.de") for r in rules] == [False, True]


def test_clearurls_url_patterns_are_read_into_hosts_and_paths() -> None:
    data = {
        "providers": {
            "lazada": {
                "urlPattern": "^https?:\\/\\/(?:[a-z0-9-]+\\.)*?lazada\\.(com|co\\.th|sg)",
                "rules": ["spm"],
            },
            "pagead": {
                "urlPattern": "^https?:\\/\\/(?:[a-z0-9-]+\\.)*?shop\\.example\\/pagead",
                "completeProvider": True,
            },
            "odd": {"urlPattern": "^https?:\\/\\/[^/]*shop\\.example\\/x+"},
        }
    }
    shop = site("shop", ["*.lazada.sg", "*.lazada.co.th", "*.shop.example"])
    imported = from_clearurls(data, shop)
    assert strips(imported) == {"*.lazada.sg": ["spm"], "*.lazada.co.th": ["spm"]}
    assert values(imported.block) == ["*.shop.example/pagead*"]
    assert [(u.where, u.reason) for u in imported.unsupported] == [
        ('provider "odd"', "urlPattern too complex to convert")
    ]


def test_domains_named_by_rules_meet_host_globs() -> None:
    glob = parse_glob("*.amazon.co.uk")
    assert Dom("amazon", any_tld=True).within(glob) == "*.amazon.co.uk"
    assert Dom("fls-na.amazon", any_tld=True).within(glob) == "*.fls-na.amazon.co.uk"
    assert Dom("amazon-adsystem", any_tld=True).within(glob) is None
    assert Dom("aliapp.org").within(parse_glob("ynuf.aliapp.org")) == "ynuf.aliapp.org"
    assert Dom("gj.mmstat.com").within(parse_glob("*.mmstat.com")) == "*.gj.mmstat.com"
    assert Dom("taobao.com", sub=False).within(parse_glob("*.taobao.com")) == "taobao.com"
    assert Dom("xtaobao.com").within(parse_glob("*.taobao.com")) is None


# -- Adblock syntax ------------------------------------------------------------------------------


def test_abp_host_and_path_rules_block_the_sites_hosts(shipped: dict[str, Site]) -> None:
    imported = from_abp(lines(EASYPRIVACY), shipped["taobao"])
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


def test_abp_exception_becomes_allow_for_its_own_site_only(shipped: dict[str, Site]) -> None:
    aliexpress = from_abp(lines(EASYPRIVACY), shipped["aliexpress"])
    assert values(aliexpress.allow) == ["*.mmstat.com/eg.js*"]
    assert "*.aliexpress.com" not in values(aliexpress.block)
    shein = from_abp(lines(EASYPRIVACY), shipped["shein"])
    assert values(shein.block) == ["*.ltwebstatic.com/*/libs/sensors/*"]
    assert shein.allow == []


def test_abp_removeparam_becomes_strip_params(shipped: dict[str, Site]) -> None:
    imported = from_abp(lines(SHORTENER), shipped["aliexpress"], "lus.txt")
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


MADE_UP = """\
! made up for this test
taobao.com##.ad-banner
example.org##.ad-banner
##.generic-ad
/^https?:\\/\\/log\\.mmstat\\.com\\/v\\.gif/$image
||log.mmstat.com^$redirect=1x1.gif
||www.taobao.com^$csp=script-src 'self'
$script,domain=taobao.com
@@||www.taobao.com^
@@||log.mmstat.com/eg.js
||taobao.com^$third-party
||g.alicdn.com/a^b
||taobao.com^$removeparam
||taobao.com^$removeparam=/^ref=/
||mmstat.com/v.gif$domain=~taobao.com
||log.mmstat.com^
||log.mmstat.com^
||other.example^$removeparam=spm
"""


def test_unsupported_syntax_is_listed_with_its_line(shipped: dict[str, Site]) -> None:
    imported = from_abp(MADE_UP.splitlines(), shipped["taobao"])
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
    text = render(imported, shipped["taobao"], shipped=True)
    assert "# unsupported (line 6): ||log.mmstat.com^$redirect=1x1.gif — option $redirect" in text
    assert text.count("# unsupported (line ") == 11


# -- the YAML ------------------------------------------------------------------------------------


def test_output_for_a_shipped_site_extends_it_and_loads(
    tmp_path: Path, shipped: dict[str, Site]
) -> None:
    taobao = shipped["taobao"]
    imported = from_abp([*lines(EASYPRIVACY), *MADE_UP.splitlines()], taobao, "ep.txt")
    text = render(imported, taobao, shipped=True)
    assert text.startswith("# generated by `shopguard policy import abp ep.txt --site taobao`")
    assert "\nextends: default\n" in text and "\nhosts:" not in text
    loaded = load_user_file(tmp_path, "taobao", text)
    assert [g.text for g in loaded.hosts] == [g.text for g in taobao.hosts]
    mine = [r for r in loaded.policy.block if r.file.endswith("user/sites/taobao.yaml")]
    assert [r.pattern.text for r in mine] == values(imported.block)
    assert len(loaded.policy.block) == len(taobao.policy.block) + len(mine)  # added, not replaced
    matching = [r.pattern.text for r in mine if r.pattern.matches("www.taobao.com", "/tracker.js")]
    assert matching == ["*.taobao.com/tracker.*"]
    assert any(a.pattern.text == "*.log.mmstat.com/eg.js*" for a in loaded.policy.allow)


def test_yaml_strings_round_trip() -> None:
    tricky = [
        "*.x.example",
        '/(?i)^(?:a"b\\\\c|#d: e)$/',
        "naïve – ümlaut",
        "line\u2028break\x85next",
        "- not a list",
        "yes",
        "𝒳",
    ]
    imported = Imported("abp", "t.txt")
    for value in tricky:
        imported.add_strip("*.x.example", value, "note: # with a hash\nand a newline")
    text = render(imported, site("x", ["*.x.example"]), shipped=False)
    assert yaml.safe_load(text)["trackers"]["strip_params"] == {"*.x.example": tricky}


# -- the command ---------------------------------------------------------------------------------


def args(tmp_path: Path, kind: str, file: Path, name: str, output: Path | None = None) -> Any:
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    return argparse.Namespace(kind=kind, file=file, site=name, output=output, config=config)


def test_command_prints_yaml_and_lists_unsupported_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made_up = tmp_path / "made-up.txt"
    made_up.write_text(MADE_UP, encoding="utf-8")
    assert import_rules(args(tmp_path, "abp", made_up, "taobao")) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)["extends"] == "default"
    assert f"{made_up}:6: unsupported: ||log.mmstat.com^$redirect=1x1.gif" in err
    assert err.rstrip().endswith(
        "2 rules imported, 11 unsupported (listed above), 3 lines about other sites skipped"
    )


def test_command_writes_the_output_file_but_never_over_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "taobao.yaml"
    assert import_rules(args(tmp_path, "clearurls", CLEARURLS, "taobao", out_file)) == 0
    written = out_file.read_text(encoding="utf-8")
    assert "extends: default" in written and capsys.readouterr().out == ""
    assert import_rules(args(tmp_path, "clearurls", CLEARURLS, "taobao", out_file)) == 2
    assert f"{out_file} exists" in capsys.readouterr().err
    assert out_file.read_text(encoding="utf-8") == written


@pytest.mark.parametrize(
    ("kind", "content", "name", "message"),
    [
        ("clearurls", '{"providers": {"x": ', "taobao", "{file}:1: invalid JSON"),
        ("clearurls", '{"rules": []}', "taobao", '{file}: expected ClearURLs rules: {"providers"'),
        ("clearurls", '{"providers": {"p": {"urlPattern": "x", "rules": "spm"}}}', "taobao",
         '{file}: provider "p": "rules" must be a list'),
        ("abp", "! ok\n||a.example^\n\x00\x01", "taobao", "{file}:3: binary data"),
        ("abp", '{"providers": {}}', "taobao", "{file}:1: JSON, not an Adblock filter list"),
        ("abp", "||other.example^\n", "ebay", "site 'ebay' is not configured and no rule in"),
        ("abp", "||ebay.com^\n", "Ebay!", "--site: expected a lower-case site name"),
    ],
)  # fmt: skip
def test_bad_input_is_a_usage_error_naming_the_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    content: str,
    name: str,
    message: str,
) -> None:
    bad = tmp_path / "input.txt"
    bad.write_text(content, encoding="utf-8")
    assert import_rules(args(tmp_path, kind, bad, name)) == 2
    out, err = capsys.readouterr()
    assert out == "" and message.replace("{file}", str(bad)) in err
    if "site 'ebay'" in message:
        assert "input.txt" in err


def test_unreadable_and_non_utf8_files_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.txt"
    assert import_rules(args(tmp_path, "abp", missing, "taobao")) == 2
    assert f"cannot read {missing}" in capsys.readouterr().err
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"||a.example^\n||caf\xe9.example^\n")
    assert import_rules(args(tmp_path, "abp", latin, "taobao")) == 2
    assert f"{latin}:2: not UTF-8 text" in capsys.readouterr().err
