"""Loading shopguard.yaml and sites/*.yaml: defaults, user overrides, and errors with file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shopguard import paths
from shopguard.engine.located import ConfigErrors, parse_size
from shopguard.engine.settings import Config, LogSettings, load_config

SHIPPED_GLOBAL = """\
mode: observe
log:
  path: null
  rotate_bytes: 1MiB
  keep: 5
  max_age_days: 30
  values: masked
body_cap: 2MiB
"""

SHIPPED_SHOP = """\
site: shop
hosts:
  - "*.shop.example"
  - "*.shopcdn.example"
first_party: ["*.shop.example"]
mode: enforce
tracking_ids: {cookies: [sid], params: [pvid], headers: [X-Device]}
"""

SHIPPED_MALL = """\
site: mall
hosts: ["*.mall.example", "*.shopcdn.example"]
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A shipped and an (empty) user config directory; file names are shown relative to here."""
    monkeypatch.chdir(tmp_path)
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    write(shipped, "shopguard.yaml", SHIPPED_GLOBAL)
    write(shipped, "sites/shop.yaml", SHIPPED_SHOP)
    write(shipped, "sites/mall.yaml", SHIPPED_MALL)
    user.mkdir()
    return shipped, user


def errors_of(shipped: Path, user: Path | None) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_config(shipped, user)
    return [str(e) for e in info.value.errors]


# --- loading --------------------------------------------------------------------------------


def test_shipped_config_alone(dirs: tuple[Path, Path]) -> None:
    shipped, _ = dirs
    config = load_config(shipped, None)
    assert [s.name for s in config.sites] == ["mall", "shop"]  # file-name order
    shop = config.site("shop")
    assert shop is not None and shop.enabled and shop.mode == "enforce"
    assert [g.text for g in shop.hosts] == ["*.shop.example", "*.shopcdn.example"]
    assert [g.text for g in shop.first_party] == ["*.shop.example"]
    assert shop.tracking_ids.cookies == {"sid"}
    assert shop.tracking_ids.params == {"pvid"}
    assert shop.tracking_ids.headers == {"x-device"}  # header names are case-insensitive
    assert config.site("mall").mode is None  # type: ignore[union-attr]
    assert config.settings.mode == "observe"
    assert config.settings.body_cap == 2 * 1024 * 1024
    assert config.settings.log == LogSettings(None, 1024 * 1024, 5, 30, "masked")


def test_an_empty_user_directory_changes_nothing(dirs: tuple[Path, Path]) -> None:
    shipped, user = dirs
    assert load_config(shipped, user).sites == load_config(shipped, None).sites
    assert load_config(shipped, user).settings == load_config(shipped, None).settings


def test_site_name_defaults_to_the_file_name(dirs: tuple[Path, Path]) -> None:
    shipped, user = dirs
    write(user, "sites/bazaar.yaml", 'hosts: ["bazaar.example"]\n')
    assert load_config(shipped, user).site("bazaar") is not None


def test_host_index_uses_enabled_sites_only(dirs: tuple[Path, Path]) -> None:
    shipped, user = dirs
    write(user, "sites/mall.yaml", "enabled: false\n")
    index = load_config(shipped, user).host_index()
    assert [s.name for s in index.sites_for("cdn.shopcdn.example")] == ["shop"]
    assert index.attribute("www.mall.example") is None


def test_real_shipped_defaults_load() -> None:
    config = load_config(paths.shipped_config_dir(), None)
    names = {s.name for s in config.enabled_sites}
    assert names >= {
        "taobao",
        "aliexpress",
        "alibaba",
        "temu",
        "shein",
        "jd",
        "pinduoduo",
        "lazada",
    }
    assert config.settings.mode == "observe"
    assert config.settings.log.values == "masked"
    for one in config.enabled_sites:
        assert one.hosts, one.name
    taobao = config.site("taobao")
    assert taobao is not None
    assert config.host_index().attribute("h5api.m.taobao.com") == taobao.scope


# --- user overrides -------------------------------------------------------------------------


def test_user_site_file_replaces_the_shipped_one(dirs: tuple[Path, Path]) -> None:
    shipped, user = dirs
    write(user, "sites/shop.yaml", 'site: shop\nhosts: ["shop.test"]\n')
    config = load_config(shipped, user)
    shop = config.site("shop")
    assert shop is not None
    assert [g.text for g in shop.hosts] == ["shop.test"]
    assert shop.mode is None and shop.first_party == () and not shop.tracking_ids.cookies
    assert shop.file == "user/sites/shop.yaml"
    assert [s.name for s in config.sites] == ["mall", "shop"]
    assert config.host_index().attribute("www.shop.example") is None


def test_enabled_false_alone_turns_a_site_off(dirs: tuple[Path, Path]) -> None:
    shipped, user = dirs
    write(user, "sites/shop.yaml", "enabled: false\n")
    config = load_config(shipped, user)
    assert [s.name for s in config.enabled_sites] == ["mall"]
    shop = config.site("shop")
    assert shop is not None and not shop.enabled


def test_user_shopguard_yaml_overrides_key_by_key(dirs: tuple[Path, Path]) -> None:
    shipped, user = dirs
    write(user, "shopguard.yaml", "mode: enforce\nlog:\n  keep: 2\n")
    settings = load_config(shipped, user).settings
    assert settings.mode == "enforce"
    assert settings.log == LogSettings(None, 1024 * 1024, 2, 30, "masked")
    assert settings.body_cap == 2 * 1024 * 1024


def test_user_log_entries_override_one_by_one(dirs: tuple[Path, Path]) -> None:
    shipped, user = dirs
    write(user, "shopguard.yaml", "log:\n  rotate_bytes: 64k\n  max_age_days: 0\n")
    log = load_config(shipped, user).settings.log
    assert (log.rotate_bytes, log.keep, log.max_age_days) == (64 * 1024, 5, 0)


def test_relative_paths_are_relative_to_the_file_that_names_them(
    dirs: tuple[Path, Path],
) -> None:
    shipped, user = dirs
    write(user, "shopguard.yaml", "log:\n  path: logs/flows.jsonl\nprofile: me.yaml\n")
    settings = load_config(shipped, user).settings
    assert settings.log.path == user / "logs" / "flows.jsonl"
    assert settings.profile == user / "me.yaml"


def test_a_user_log_path_of_null_restores_the_default(dirs: tuple[Path, Path]) -> None:
    shipped, user = dirs
    write(shipped, "shopguard.yaml", "log:\n  path: /var/log/x.jsonl\n")
    write(user, "shopguard.yaml", "log:\n  path: null\n")
    assert load_config(shipped, user).settings.log.path is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (2097152, 2097152),
        ("2097152", 2097152),
        ("2MiB", 2 * 1024**2),
        ("2 MiB", 2 * 1024**2),
        ("512k", 512 * 1024),
        ("512KiB", 512 * 1024),
        ("1g", 1024**3),
        ("10MB", 10 * 1024**2),
        ("100b", 100),
        ("lots", None),
        ("2 TB", None),
        ("-5", None),
        ("1.5MiB", None),
        (True, None),
        (None, None),
        ([1], None),
    ],
)
def test_parse_size(text: object, expected: int | None) -> None:
    assert parse_size(text) == expected


# --- errors ---------------------------------------------------------------------------------

SITE_KEYS = (
    "site, extends, enabled, hosts, first_party, mode, referred_only, tracking_ids, device_ids, "
    "not_identifiers, protect, packed_ips, trackers, "
    "fields, allow, on_uninspected, examples"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            'site: bazaar\nhosts: ["bazaar.example"]\ncolour: blue\n',
            f"user/sites/bazaar.yaml:3: colour: unknown key (expected one of: {SITE_KEYS})",
            id="unknown key",
        ),
        pytest.param(
            'site: bazaar\nhosts: ["bazaar.example"]\ncolours:\n  - blue\n  - red\n',
            f"user/sites/bazaar.yaml:3: colours: unknown key (expected one of: {SITE_KEYS})",
            id="unknown key with a block value: the key's line",
        ),
        pytest.param(
            'site: bazaar\nhosts: ["bazaar.example"]\nenabled: "yes"\n',
            "user/sites/bazaar.yaml:3: enabled: expected true or false, got 'yes'",
            id="wrong type",
        ),
        pytest.param(
            'site: bazaar\nhosts: "*.bazaar.example"\n',
            "user/sites/bazaar.yaml:2: hosts: expected a list, got '*.bazaar.example'",
            id="hosts not a list",
        ),
        pytest.param(
            "site: bazaar\nhosts: []\n",
            "user/sites/bazaar.yaml:2: hosts: expected at least one host glob",
            id="empty hosts",
        ),
        pytest.param(
            "site: bazaar\nhosts:\n  - bazaar.example\n  - 5\n",
            "user/sites/bazaar.yaml:4: hosts[1]: expected a host glob as text, got 5",
            id="host not text",
        ),
        pytest.param(
            "site: bazaar\nhosts: [5]\n",
            "user/sites/bazaar.yaml:2: hosts[0]: expected a host glob as text, got 5",
            id="the only host not text: that error alone",
        ),
        pytest.param(
            'site: bazaar\nhosts: ["bazaar.example"]\nmode: block\n',
            "user/sites/bazaar.yaml:3: mode: expected one of observe, enforce, got 'block'",
            id="bad mode",
        ),
        pytest.param(
            "site: bazaar\nhosts:\n  - bazaar.example\n  - '*bazaar.example'\n",
            "user/sites/bazaar.yaml:4: hosts[1]: invalid host glob '*bazaar.example': "
            "'*' may only stand as a whole leftmost label (expected e.g. '*.taobao.com')",
            id="bad glob",
        ),
        pytest.param(
            'site: bazaar\nhosts: ["bazaar.example"]\nfirst_party:\n  - "*.com"\n',
            "user/sites/bazaar.yaml:4: first_party[0]: invalid host glob '*.com': too broad, "
            "name at least a registrable domain (e.g. '*.lazada.sg', not '*.sg')",
            id="too broad first_party",
        ),
        pytest.param(
            'site: bazaar\nhosts: ["bazaar.example"]\nhosts: ["other.example"]\n',
            "user/sites/bazaar.yaml:3: hosts: duplicate key (first given on line 2)",
            id="duplicate key",
        ),
        pytest.param(
            'site: bazaar\nhosts: ["bazaar.example"]\nmode: observe: enforce\n',
            "user/sites/bazaar.yaml:3: YAML syntax error: mapping values are not allowed here",
            id="YAML syntax",
        ),
        pytest.param(
            "site: bazaar\nmode: observe\n",
            "user/sites/bazaar.yaml:1: missing required key 'hosts' (or set 'enabled: false')",
            id="missing hosts",
        ),
        pytest.param(
            'site: Bazaar!\nhosts: ["bazaar.example"]\n',
            "user/sites/bazaar.yaml:1: site: expected a lower-case name like 'taobao', "
            "got 'Bazaar!'",
            id="bad site name",
        ),
        pytest.param(
            'site: bazaar\nhosts: ["bazaar.example"]\ntracking_ids:\n  cookies: sid\n',
            "user/sites/bazaar.yaml:4: tracking_ids.cookies: expected a list, got 'sid'",
            id="tracking ids not a list",
        ),
        pytest.param(
            "- just\n- a list\n",
            "user/sites/bazaar.yaml:1: expected a mapping, got a list",
            id="not a mapping",
        ),
    ],
)
def test_site_file_errors(dirs: tuple[Path, Path], text: str, expected: str) -> None:
    shipped, user = dirs
    write(user, "sites/bazaar.yaml", text)
    assert errors_of(shipped, user) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "mood: enforce\n",
            "user/shopguard.yaml:1: mood: unknown key (expected one of: mode, log, profile, "
            "body_cap)",
            id="unknown key",
        ),
        pytest.param(
            "log:\n  keep: 2\n  rotate: 1MiB\n",
            "user/shopguard.yaml:3: log.rotate: unknown key (expected one of: path, "
            "rotate_bytes, keep, max_age_days, values)",
            id="unknown log key",
        ),
        pytest.param(
            "mode: Enforce\n",
            "user/shopguard.yaml:1: mode: expected one of observe, enforce, got 'Enforce'",
            id="bad mode",
        ),
        pytest.param(
            "log:\n  keep: ten\n",
            "user/shopguard.yaml:2: log.keep: expected a whole number, got 'ten'",
            id="wrong type",
        ),
        pytest.param(
            "log:\n  keep: -1\n",
            "user/shopguard.yaml:2: log.keep: expected a whole number >= 0, got -1",
            id="negative keep",
        ),
        pytest.param(
            "log:\n  values: clear\n",
            "user/shopguard.yaml:2: log.values: expected one of masked, raw, got 'clear'",
            id="bad values",
        ),
        pytest.param(
            "log: 5\n",
            "user/shopguard.yaml:1: log: expected a mapping, got 5",
            id="log not a mapping",
        ),
        pytest.param(
            "body_cap: lots\n",
            "user/shopguard.yaml:1: body_cap: expected a size in bytes >= 1 "
            "(e.g. 2097152 or 2MiB), got 'lots'",
            id="bad size",
        ),
        pytest.param(
            "log:\n  rotate_bytes: 10\n",
            "user/shopguard.yaml:2: log.rotate_bytes: expected a size in bytes >= 1024 "
            "(e.g. 2097152 or 2MiB), got 10",
            id="size too small",
        ),
        pytest.param(
            "mode: observe\nmode: enforce\n",
            "user/shopguard.yaml:2: mode: duplicate key (first given on line 1)",
            id="duplicate key",
        ),
        pytest.param(
            "log:\n  keep: [2\n",
            "user/shopguard.yaml:3: YAML syntax error: expected ',' or ']', but got '<stream end>'",
            id="YAML syntax",
        ),
    ],
)
def test_global_file_errors(dirs: tuple[Path, Path], text: str, expected: str) -> None:
    shipped, user = dirs
    write(user, "shopguard.yaml", text)
    assert errors_of(shipped, user) == [expected]


def test_errors_are_exceptions_whose_text_lists_every_error(dirs: tuple[Path, Path]) -> None:
    shipped, user = dirs
    write(user, "shopguard.yaml", "mode: fast\n")
    with pytest.raises(ConfigErrors, match=r"^user/shopguard.yaml:1: mode: expected one of"):
        load_config(shipped, user)


def test_every_error_of_a_file_is_reported_at_once(dirs: tuple[Path, Path]) -> None:
    shipped, user = dirs
    write(
        user,
        "sites/bazaar.yaml",
        """\
        site: bazaar
        hosts:
          - "*.bazaar.example"
          - "bazaar.example:443"
        mode: fast
        colour: blue
        """,
    )
    assert errors_of(shipped, user) == [
        f"user/sites/bazaar.yaml:6: colour: unknown key (expected one of: {SITE_KEYS})",
        "user/sites/bazaar.yaml:5: mode: expected one of observe, enforce, got 'fast'",
        "user/sites/bazaar.yaml:4: hosts[1]: invalid host glob 'bazaar.example:443': a host "
        "name only, no scheme, port or path (expected e.g. '*.taobao.com')",
    ]


def test_errors_of_every_file_are_reported_at_once(dirs: tuple[Path, Path]) -> None:
    shipped, user = dirs
    write(user, "shopguard.yaml", "mode: fast\n")
    write(user, "sites/a.yaml", "hosts: [a.example, 1]\n")
    write(user, "sites/b.yaml", "hosts: [x\n")
    found = errors_of(shipped, user)
    assert len(found) == 3
    assert found[0].startswith("user/shopguard.yaml:1: mode:")
    assert found[1].startswith("user/sites/a.yaml:1: hosts[1]:")
    assert found[2].startswith("user/sites/b.yaml:2: YAML syntax error:")


def test_errors_carry_file_line_and_key(dirs: tuple[Path, Path]) -> None:
    shipped, user = dirs
    write(user, "sites/bazaar.yaml", "hosts:\n  - ok.example\n  - a.*.example\n")
    with pytest.raises(ConfigErrors) as info:
        load_config(shipped, user)
    (error,) = info.value.errors
    assert (error.file, error.line, error.key) == ("user/sites/bazaar.yaml", 3, "hosts[1]")


def test_duplicate_site_name_across_files(dirs: tuple[Path, Path]) -> None:
    shipped, user = dirs
    write(user, "sites/shop2.yaml", '# my copy\nsite: shop\nhosts: ["shop.test"]\n')
    assert errors_of(shipped, user) == [
        "user/sites/shop2.yaml:2: site: site 'shop' is also defined in shipped/sites/shop.yaml"
    ]


def test_duplicate_site_name_in_one_directory(dirs: tuple[Path, Path]) -> None:
    shipped, user = dirs
    write(user, "sites/a.yaml", 'site: bazaar\nhosts: ["bazaar.example"]\n')
    write(user, "sites/b.yaml", 'site: bazaar\nhosts: ["bazaar.test"]\n')
    (error,) = errors_of(shipped, user)
    assert error.startswith("user/sites/b.yaml:")
    assert error.endswith(": site: site 'bazaar' is also defined in user/sites/a.yaml")


def test_a_broken_shipped_file_is_reported_too(dirs: tuple[Path, Path]) -> None:
    shipped, user = dirs
    write(shipped, "sites/mall.yaml", "hosts: ['*.mall.example']\nmode: later\n")
    assert errors_of(shipped, user) == [
        "shipped/sites/mall.yaml:2: mode: expected one of observe, enforce, got 'later'"
    ]


def test_a_user_file_replacing_a_broken_shipped_one_is_not_affected_by_it(
    dirs: tuple[Path, Path],
) -> None:
    shipped, user = dirs
    write(shipped, "sites/mall.yaml", "hosts: ['*.mall.example']\nmode: later\n")
    write(user, "sites/mall.yaml", "enabled: false\n")
    config: Config = load_config(shipped, user)
    assert [s.name for s in config.enabled_sites] == ["shop"]
