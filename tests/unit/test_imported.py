"""The model of an import: domains named by rules meet the site's host globs; what is kept."""

from __future__ import annotations

import subprocess
import sys

from shopguard.engine.hosts import parse_glob
from shopguard.engine.imported import Dom, Imported, Unsupported, parse_dom


def test_domains_named_by_rules_meet_host_globs() -> None:
    glob = parse_glob("*.amazon.co.uk")
    assert Dom("amazon", any_tld=True).within(glob) == "*.amazon.co.uk"
    assert Dom("fls-na.amazon", any_tld=True).within(glob) == "*.fls-na.amazon.co.uk"
    assert Dom("amazon-adsystem", any_tld=True).within(glob) is None
    assert Dom("aliapp.org").within(parse_glob("ynuf.aliapp.org")) == "ynuf.aliapp.org"
    assert Dom("gj.mmstat.com").within(parse_glob("*.mmstat.com")) == "*.gj.mmstat.com"
    assert Dom("taobao.com", sub=False).within(parse_glob("*.taobao.com")) == "taobao.com"
    assert Dom("xtaobao.com").within(parse_glob("*.taobao.com")) is None


def test_domains_are_read_as_rules_write_them() -> None:
    assert parse_dom("*.Taobao.com") == Dom("taobao.com")
    assert parse_dom("aliexpress.*") == Dom("aliexpress", any_tld=True)
    assert parse_dom("aliexpress.", sub=False) == Dom("aliexpress", sub=False, any_tld=True)
    assert parse_dom("taobao.com/x") is None and parse_dom("") is None


def test_entries_are_kept_once_and_unreadable_patterns_listed() -> None:
    imported = Imported("abp", "t.txt")
    imported.add_pattern("*.mmstat.com/v.gif", "first", "line 1", "||mmstat.com/v.gif")
    imported.add_pattern("*.mmstat.com/v.gif", "second", "line 2", "||mmstat.com/v.gif")
    imported.add_pattern("ww*.mmstat.com/v.gif", "third", "line 3", "||ww*.mmstat.com/v.gif")
    assert [(e.value, e.note) for e in imported.block] == [("*.mmstat.com/v.gif", "first")]
    assert [(u.where, u.reason.split(":")[0]) for u in imported.unsupported] == [
        ("line 3", "no valid shopguard pattern")
    ]
    assert imported.summary() == (
        "1 rule imported, 1 unsupported, 0 lines about other sites skipped"
    )


def test_unsupported_rules_are_shown_on_one_line_and_cut() -> None:
    item = Unsupported("line 7", "||a.example^$csp=x\n  y" + "z" * 200, "option $csp")
    assert item.comment().startswith("unsupported (line 7): ||a.example^$csp=x y")
    shown = item.message().split(" — ")[0]
    assert len(shown) == 160 and shown.endswith("…")


def test_the_import_modules_stay_in_the_engine() -> None:
    """Parsing and writing load nothing of mitmproxy, the command line or the addons."""
    code = (
        "import sys\n"
        "import shopguard.engine.adblock, shopguard.engine.clearurls, shopguard.engine.sitefile\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = run.stdout.split()
    assert "shopguard.engine.imported" in loaded
    ours = [m for m in loaded if m.split(".")[0] in ("mitmproxy", "shopguard")]
    allowed = (["shopguard"], ["shopguard", "engine"])
    assert [m for m in ours if m.split(".")[:2] not in allowed] == []
