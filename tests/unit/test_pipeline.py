"""The pipeline: one request through routing, extraction, detection and the policy; names that
are personal data written masked wherever the result shows them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shopguard.engine import pipeline
from shopguard.engine.detect import Detector
from shopguard.engine.known_values import KnownMatcher, load_profile
from shopguard.engine.masking import mask_path
from shopguard.engine.request import PlainRequest
from shopguard.engine.settings import Config, load_config

SITE = """\
hosts: ["*.shop.example"]
first_party: ["*.shop.example"]
fields:
  phone: strip
  email: replace
"""


@pytest.fixture
def ctx(tmp_path: Path) -> pipeline.Context:
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "shop.yaml").write_text(textwrap.dedent(SITE), encoding="utf-8")
    profile = tmp_path / "profile.yaml"
    profile.write_text('phone: ["+86 138 0013 8000"]\n', encoding="utf-8")
    config: Config = load_config(tmp_path, None)
    detector = Detector(b"k" * 32, KnownMatcher(load_profile(profile)))
    return pipeline.Context(config, detector, mode="enforce")


def test_a_name_that_is_a_phone_number_is_masked_and_stripped(ctx: pipeline.Context) -> None:
    request = PlainRequest("GET", "https://www.shop.example/x?13800138000=1&q=shoes")
    result = pipeline.run(ctx, request)
    (finding,) = result.findings
    assert (finding.category, finding.location) == ("phone", "query:{phone:138****8000}")
    assert finding.name is None  # the raw name stays out of what is shown
    (action,) = result.outcome.actions
    assert (action.action, action.target, action.applied) == (
        "strip",
        "query:{phone:138****8000}",
        True,
    )
    assert result.outcome.url == "https://www.shop.example/x?q=shoes"
    assert "13800138000" not in repr([f.to_dict() for f in result.findings])
    logged = mask_path("/x?13800138000=1&q=shoes", (), result.masked_names)
    assert logged == "/x?{phone:138****8000}=***&q=***"


def test_an_e_mail_as_a_json_key_is_masked_and_not_replaced(ctx: pipeline.Context) -> None:
    body = b'{"orders": {"wang.xiaoming@example.com": {"n": 1}}}'
    request = PlainRequest(
        "POST", "https://api.shop.example/o", [("content-type", "application/json")], body
    )
    result = pipeline.run(ctx, request)
    (finding,) = [f for f in result.findings if f.category == "email"]
    assert finding.location == "body:$.orders.{email:w***@example.com}"  # the member it names
    (action,) = result.outcome.actions
    assert not action.applied and "name" in (action.reason or "")
    assert result.outcome.body is None  # nothing was edited


def test_a_name_that_is_personal_data_is_stripped_whole(ctx: pipeline.Context) -> None:
    """Stripping it removes the member it names, not only what is inside it; no reason, target
    or path shows the raw name."""
    body = b'{"orders": {"13800138000": {"n": "x"}}, "k": 1}'
    request = PlainRequest(
        "POST", "https://api.shop.example/o", [("content-type", "application/json")], body
    )
    result = pipeline.run(ctx, request)
    (action,) = result.outcome.actions
    assert (action.action, action.target, action.applied) == (
        "strip",
        "body:$.orders.{phone:138****8000}",
        True,
    )
    assert result.outcome.body == b'{"orders":{},"k":1}'
    shown = repr(
        [f.to_dict() for f in result.findings] + [a.to_dict() for a in result.outcome.actions]
    )
    assert "13800138000" not in shown


def test_a_name_alone_is_found_and_masked(ctx: pipeline.Context) -> None:
    """`?13800138000` (a name without value) is personal data too."""
    result = pipeline.run(ctx, PlainRequest("GET", "https://www.shop.example/x?13800138000&q=1"))
    assert [f.location for f in result.findings] == ["query:{phone:138****8000}"]
    assert mask_path("/x?13800138000&q=1", (), result.masked_names) == (
        "/x?{phone:138****8000}&q=***"
    )


def test_reasons_and_block_targets_do_not_show_a_masked_name(tmp_path: Path) -> None:
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "shop.yaml").write_text(
        'hosts: ["*.shop.example"]\nfields:\n  email: block\n', encoding="utf-8"
    )
    ctx = pipeline.Context(load_config(tmp_path, None), Detector(b"k" * 32), mode="enforce")
    result = pipeline.run(ctx, PlainRequest("GET", "https://www.shop.example/s?wang@example.com=1"))
    (block,) = result.outcome.actions
    assert block.target == "request" and block.applied
    assert "wang" not in (block.reason or "") and "{email:w***@example.com}" in (block.reason or "")


def test_a_request_no_site_handles_is_only_inspected_when_asked(ctx: pipeline.Context) -> None:
    request = PlainRequest("GET", "https://news.example/?email=wang@example.com")
    assert pipeline.run(ctx, request).findings == []
    scanned = pipeline.run(ctx, request, inspect_unrouted=True)
    assert scanned.site is None and [f.category for f in scanned.findings] == ["email"]
    assert scanned.outcome.actions == []


def test_the_request_host_wins_over_the_url(ctx: pipeline.Context) -> None:
    request = PlainRequest("GET", "https://news.example/?a=1", host="www.shop.example")
    routed = pipeline.route_request(ctx, request)
    assert routed is not None and routed.site.name == "shop"
