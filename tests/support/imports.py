"""What the importer tests share: the sample lists, made-up Adblock lines, small site builders."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from shopguard import paths
from shopguard.engine.hosts import parse_glob
from shopguard.engine.imported import Entry, Imported
from shopguard.engine.settings import Config, Site, load_config

FIXTURES = Path(__file__).parent.parent / "fixtures" / "import"
CLEARURLS = FIXTURES / "clearurls-sample.json"
EASYPRIVACY = FIXTURES / "easyprivacy-sample.txt"
SHORTENER = FIXTURES / "legitimate-url-shortener-sample.txt"

# Adblock syntax shopguard cannot express, one kind per line (the tests name them by line number)
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


@cache
def _defaults() -> Config:
    return load_config(paths.shipped_config_dir(), None)


def shipped(name: str) -> Site:
    """A shipped site, as the defaults configure it."""
    found = _defaults().site(name)
    assert found is not None, name
    return found


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
