"""Policy files: every rule read with its file:line, errors that name file, line and key,
`extends: default`, and the matchers (URL patterns, host conditions, block index)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shopguard.engine.located import ConfigErrors
from shopguard.engine.policy import BlockIndex, BlockRule, Policy, parse_pattern
from shopguard.engine.settings import Site, load_config

SHOP = """\
site: shop
hosts: ["*.shop.example", "*.track.example"]
first_party: ["*.shop.example"]
trackers:
  block:
    - "beacon.track.example"
    - "*.shop.example/log/*.gif"
    - "www.shop.example/ts?*"
  strip_params: [spm, "/^utm_/"]
  strip_cookies:
    "*.track.example": [visitor]
  strip_headers: [X-Fingerprint]
  strip_fields: [umid]
fields:
  default: log
  phone: {action: replace, hosts: ["!*.shop.example"]}
  device_id: strip
allow:
  - match: "api.shop.example/order/create*"
    fields: [phone, name]
  - match: "www.shop.example/help"
on_uninspected: block
examples:
  - request: "GET https://beacon.track.example/t.gif?x=1"
    headers: {Sec-Fetch-Dest: image}
    expect: {action: block, status: 204}
"""


def write(directory: Path, name: str, text: str) -> None:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.chdir(tmp_path)
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    write(shipped, "sites/shop.yaml", SHOP)
    user.mkdir()
    return shipped, user


def shop(shipped: Path, user: Path | None = None) -> Site:
    site = load_config(shipped, user).site("shop")
    assert site is not None
    return site


def errors(shipped: Path, user: Path, text: str) -> list[str]:
    write(user, "sites/bazaar.yaml", "site: bazaar\nhosts: [bazaar.example]\n" + text)
    with pytest.raises(ConfigErrors) as info:
        load_config(shipped, user)
    return [str(e) for e in info.value.errors]


def test_every_rule_is_read_with_its_file_and_line(dirs: tuple[Path, Path]) -> None:
    policy = shop(dirs[0]).policy
    assert [(r.pattern.text, r.where) for r in policy.block] == [
        ("beacon.track.example", "shipped/sites/shop.yaml:6"),
        ("*.shop.example/log/*.gif", "shipped/sites/shop.yaml:7"),
        ("www.shop.example/ts?*", "shipped/sites/shop.yaml:8"),
    ]
    assert [(r.name, r.line) for r in policy.strip_params] == [("spm", 9), ("/^utm_/", 9)]
    (cookie,) = policy.strip_cookies
    assert cookie.name == "visitor" and cookie.hosts.holds("t.track.example")
    assert not cookie.hosts.holds("www.shop.example")
    assert [r.name for r in policy.strip_headers] == ["x-fingerprint"]  # case-insensitive
    assert [r.name for r in policy.strip_fields] == ["umid"]
    assert [(r.category, r.action, r.line) for r in policy.fields] == [
        ("default", "log", 15),
        ("phone", "replace", 16),
        ("device_id", "strip", 17),
    ]
    assert policy.on_uninspected == "block"
    assert policy.on_uninspected_rule == "shipped/sites/shop.yaml:22"
    (example,) = policy.examples
    assert example.method == "GET" and example.headers == (("Sec-Fetch-Dest", "image"),)
    assert example.expect == {"action": "block", "status": 204}
    assert example.where == "shipped/sites/shop.yaml:24"


def test_field_rules_follow_host_conditions(dirs: tuple[Path, Path]) -> None:
    policy = shop(dirs[0]).policy
    third = policy.field_rule("phone", "pixel.other.example")
    first = policy.field_rule("phone", "www.shop.example")
    assert third is not None and third.action == "replace"
    assert first is not None and first.category == "default" and first.action == "log"
    assert policy.field_rule("email", "x.shop.example").action == "log"  # type: ignore[union-attr]


def test_allow_rules(dirs: tuple[Path, Path]) -> None:
    policy = shop(dirs[0]).policy
    (order,) = policy.allowances("api.shop.example", "/order/create?x=1")
    assert order.fields == {"phone", "name"} and order.keep == frozenset()
    assert not order.everything
    (help_page,) = policy.allowances("www.shop.example", "/help")
    assert help_page.everything
    assert not policy.allowances("www.shop.example", "/helpdesk")


def test_url_patterns() -> None:
    gif = parse_pattern("*.shop.example/log/*.gif")
    assert gif.matches("a.shop.example", "/log/v.gif?cna=1")  # the query is not part of it
    assert gif.matches("shop.example", "/log/x/y.gif")
    assert not gif.matches("a.shop.example", "/log/v.gift")
    assert not gif.matches("shop.example.evil", "/log/v.gif")
    ts = parse_pattern("alibaba.com/ts?*")  # with a `?`, the query is part of the path
    assert ts.matches("alibaba.com", "/ts?x=1") and not ts.matches("alibaba.com", "/tsx")
    assert parse_pattern("https://gm.mmstat.com/").path is None  # scheme and lone / ignored


def test_block_index_finds_the_last_written_matching_rule() -> None:
    rules = [
        BlockRule("a.yaml", 1, parse_pattern("*.track.example")),
        BlockRule("a.yaml", 2, parse_pattern("beacon.track.example/t.gif")),
        *(BlockRule("b.yaml", n, parse_pattern(f"host{n}.example")) for n in range(5000)),
    ]
    index = BlockIndex(rules)
    assert len(index) == 5002
    assert index.find("beacon.track.example", "/t.gif").line == 2  # type: ignore[union-attr]
    assert index.find("beacon.track.example", "/other").line == 1  # type: ignore[union-attr]
    assert index.find("host4321.example", "/").line == 4321  # type: ignore[union-attr]
    assert index.find("www.shop.example", "/") is None
    assert Policy(block=tuple(rules)).blocks.find("x.track.example", "/") is rules[0]


def test_extends_default_adds_to_the_shipped_site(dirs: tuple[Path, Path]) -> None:
    shipped, user = dirs
    write(
        user,
        "sites/shop.yaml",
        """\
        extends: default
        mode: enforce
        trackers:
          strip_params: [scm]
        fields:
          phone: strip
        """,
    )
    site = shop(shipped, user)
    assert site.mode == "enforce"
    assert [g.text for g in site.hosts] == ["*.shop.example", "*.track.example"]
    assert [(r.name, r.where) for r in site.policy.strip_params] == [
        ("spm", "shipped/sites/shop.yaml:9"),
        ("/^utm_/", "shipped/sites/shop.yaml:9"),
        ("scm", "user/sites/shop.yaml:4"),
    ]
    rule = site.policy.field_rule("phone", "x.other.example")
    assert rule is not None and (rule.action, rule.where) == ("strip", "user/sites/shop.yaml:6")
    assert len(site.policy.block) == 3 and site.policy.on_uninspected == "block"


def test_extends_without_a_shipped_site_is_an_error(dirs: tuple[Path, Path]) -> None:
    shipped, user = dirs
    write(user, "sites/bazaar.yaml", "extends: default\n")
    with pytest.raises(ConfigErrors) as info:
        load_config(shipped, user)
    assert [str(e) for e in info.value.errors] == [
        "user/sites/bazaar.yaml:1: extends: 'extends: default' needs a shipped site file named "
        "bazaar.yaml (shipped: shop)"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "trackers:\n  strip_params: [spm, scm, pvid, '/(/']\n",
            "user/sites/bazaar.yaml:4: trackers.strip_params[3]: invalid regex '/(/': "
            "missing ), unterminated subpattern",
            id="bad regex",
        ),
        pytest.param(
            "trackers:\n  block: ['*.com']\n",
            "user/sites/bazaar.yaml:4: trackers.block[0]: invalid host glob '*.com': too broad, "
            "name at least a registrable domain (e.g. '*.lazada.sg', not '*.sg')",
            id="bad block glob",
        ),
        pytest.param(
            "trackers:\n  blocks: []\n",
            "user/sites/bazaar.yaml:4: trackers.blocks: unknown key (expected one of: block, "
            "strip_params, strip_cookies, strip_headers, strip_fields)",
            id="unknown tracker key",
        ),
        pytest.param(
            "trackers:\n  strip_cookies:\n    'x.*.example': [a]\n",
            "user/sites/bazaar.yaml:5: trackers.strip_cookies.x.*.example: invalid host glob "
            "'x.*.example': '*' may only stand as a whole leftmost label (expected e.g. "
            "'*.taobao.com')",
            id="bad host of a per-host list",
        ),
        pytest.param(
            "fields:\n  phone: delete\n",
            "user/sites/bazaar.yaml:4: fields.phone: expected one of log, strip, replace, "
            "block, got 'delete'",
            id="unknown action",
        ),
        pytest.param(
            "fields:\n  telephone: strip\n",
            "user/sites/bazaar.yaml:4: fields.telephone: unknown key (expected one of: default, "
            "phone, email, name, address, postcode, id_number, payment_card, geo, device_id, "
            "tracking_id, ip_address)",
            id="unknown category",
        ),
        pytest.param(
            "fields:\n  phone: {hosts: [a.example]}\n",
            "user/sites/bazaar.yaml:4: fields.phone: missing required key 'action'",
            id="field rule without action",
        ),
        pytest.param(
            "allow:\n  - fields: [phone]\n",
            "user/sites/bazaar.yaml:4: allow[0]: missing required key 'match'",
            id="allow without match",
        ),
        pytest.param(
            "allow:\n  - match: a.bazaar.example\n    fields: [phones]\n",
            "user/sites/bazaar.yaml:5: allow[0].fields[0]: expected a category (phone, email, "
            "name, address, postcode, id_number, payment_card, geo, device_id, tracking_id, "
            "ip_address), got 'phones'",
            id="allow with an unknown category",
        ),
        pytest.param(
            "on_uninspected: drop\n",
            "user/sites/bazaar.yaml:3: on_uninspected: expected one of pass, block, got 'drop'",
            id="on_uninspected",
        ),
        pytest.param(
            "examples:\n  - request: 'FETCH https://a/'\n    expect: {action: block}\n",
            "user/sites/bazaar.yaml:4: examples[0].request: expected 'METHOD URL' such as "
            "'GET https://shop.example/', got 'FETCH https://a/'",
            id="example request",
        ),
        pytest.param(
            "examples:\n  - request: 'GET https://a.example/'\n    expect: {action: drop}\n",
            "user/sites/bazaar.yaml:5: examples[0].expect.action: expected one of block, pass, "
            "got 'drop'",
            id="example expectation",
        ),
    ],
)
def test_policy_errors_name_file_line_and_key(
    dirs: tuple[Path, Path], text: str, expected: str
) -> None:
    assert errors(dirs[0], dirs[1], text) == [expected]
