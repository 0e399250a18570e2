"""ClearURLs providers that concern a site become its strip_params and blocks; the parts
shopguard cannot express are listed, never dropped."""

from __future__ import annotations

import re
from pathlib import Path

from shopguard.engine.clearurls import from_clearurls
from shopguard.engine.sitefile import render
from tests.support.imports import clearurls, load_user_file, shipped, site, strips, values


def test_clearurls_rules_become_strip_params_of_the_providers_hosts() -> None:
    imported = from_clearurls(clearurls(), shipped("taobao"))
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
