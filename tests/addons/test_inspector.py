"""The inspector addon on tflow flows: findings in metadata and the log, profile reloads."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow

from shopguard.chain import make_addons
from shopguard.runtime import Runtime
from shopguard.state import META

PROFILE = Path(__file__).resolve().parents[1] / "fixtures" / "corpus" / "profile.yaml"
MD5_EMAIL = hashlib.md5(b"wang.xiaoming@example.com").hexdigest()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE.read_text(encoding="utf-8"), encoding="utf-8")
    profile.chmod(0o600)
    rt = Runtime()
    addons = make_addons(rt)
    log = tmp_path / "flows.jsonl"
    with taddons.context(*addons) as tctx:
        tctx.options.update(
            shopguard_config="",
            shopguard_log=str(log),
            shopguard_profile=str(profile),
        )
        yield {"rt": rt, "addons": addons, "log": log, "profile": profile, "tctx": tctx}


def run(addons: list[Any], flow: Any) -> None:
    for hook in ("requestheaders", "request", "response"):
        for addon in addons:
            if hasattr(addon, hook):
                getattr(addon, hook)(flow)


def lines(log: Path, event: str) -> list[dict[str, Any]]:
    return [x for x in map(json.loads, log.read_text().splitlines()) if x["event"] == event]


def order_flow() -> Any:
    flow = tflow.tflow(resp=True)
    flow.request.host = "h5api.m.taobao.com"
    flow.request.headers["host"] = "h5api.m.taobao.com"
    flow.request.path = "/h5/mtop.trade.order.create/1.0/?appKey=1&t=1700000000000"
    flow.request.method = "POST"
    flow.request.headers["content-type"] = "application/x-www-form-urlencoded"
    flow.request.headers["cookie"] = "cna=Qm9vZ2llV29vZ2ll; _m_h5_tk=abc_1"
    flow.request.content = b"data=%7B%22receiverMobile%22%3A%2213800138000%22%7D"
    return flow


def test_findings_go_into_the_flow_and_the_log(env: dict[str, Any]) -> None:
    flow = order_flow()
    run(env["addons"], flow)
    state = flow.metadata[META]
    assert state["inspection"] == "full"
    found = {(f["category"], f["location"]) for f in state["findings"]}
    assert ("phone", "body.form:data.$.receiverMobile") in found
    assert ("tracking_id", "cookie:cna") in found
    # under mitmweb: each value and what became of it; ⚠ as no rule acts on them (observe,
    # no site policy for these fields)
    assert flow.comment == (
        "shopguard: tracking_id at cookie:cna: sent, no rule; "
        "phone at body.form:data.$.receiverMobile: sent, no rule"
    )
    assert flow.marked == ":warning:"
    (line,) = lines(env["log"], "flow")
    assert {(f["category"], f["location"]) for f in line["findings"]} == found
    text = env["log"].read_text()
    assert "13800138000" not in text and "Qm9vZ2llV29vZ2ll" not in text


def test_phone_in_a_path_segment_is_masked_in_the_logged_path(env: dict[str, Any]) -> None:
    flow = tflow.tflow(resp=True)
    flow.request.host = "www.aliexpress.com"
    flow.request.headers["host"] = "www.aliexpress.com"
    flow.request.path = "/user/13800138000/orders?page=2"
    run(env["addons"], flow)
    (line,) = lines(env["log"], "flow")
    assert line["path"] == "/user/***/orders?page=***"


def test_out_of_scope_flows_are_not_inspected(env: dict[str, Any]) -> None:
    flow = tflow.tflow(resp=True)
    flow.request.path = "/?mobile=13800138000"
    run(env["addons"], flow)
    assert META not in flow.metadata
    assert not lines(env["log"], "flow")


def test_streamed_body_is_logged_with_inspection_none(env: dict[str, Any]) -> None:
    flow = order_flow()
    flow.request.stream = True
    run(env["addons"], flow)
    (line,) = lines(env["log"], "flow")
    assert line["inspection"] == "none"


def test_body_over_the_cap_is_partial(env: dict[str, Any]) -> None:
    env["tctx"].options.update(shopguard_config="")  # reload with body_cap from the defaults
    flow = order_flow()
    flow.request.content = b"data=" + b"x" * (3 * 1024 * 1024)
    run(env["addons"], flow)
    assert flow.metadata[META]["inspection"] == "partial"


@pytest.mark.parametrize(
    ("content_type", "body", "note"),
    [
        ("application/x-www-form-urlencoded", b"data=" + b"x" * (3 * 1024 * 1024), "cut at"),
        ("application/octet-stream", bytes(range(256)) * 4, "a binary body"),
        ("application/json", b"[" * 100 + b"]" * 100, "JSON nested too deep"),
    ],
)
def test_a_partial_inspection_says_why_in_the_log(
    env: dict[str, Any], content_type: str, body: bytes, note: str
) -> None:
    """The README's `inspection_notes`: what could not be read, on the flow's line."""
    env["tctx"].options.update(shopguard_config="")  # body_cap from the defaults (2 MiB)
    flow = order_flow()
    flow.request.headers["content-type"] = content_type
    flow.request.content = body
    run(env["addons"], flow)
    (line,) = lines(env["log"], "flow")
    assert line["inspection"] == "partial"
    assert any(note in text for text in line["inspection_notes"]), line["inspection_notes"]
    full = order_flow()
    run(env["addons"], full)
    assert "inspection_notes" not in lines(env["log"], "flow")[-1]  # only when there are some


def test_profile_edit_is_reloaded_and_invalid_edit_keeps_the_last_good(
    env: dict[str, Any],
) -> None:
    profile: Path = env["profile"]
    inspector = env["addons"][1]
    profile.write_text('phone: ["+86 139 1234 5678"]\n', encoding="utf-8")
    os.utime(profile, (time.time() + 5, time.time() + 5))
    inspector.reload_if_changed()  # what the file watcher does once a second
    flow = order_flow()
    flow.request.content = b"data=%7B%22q%22%3A%2213912345678%22%7D"
    run(env["addons"], flow)
    assert [f["category"] for f in flow.metadata[META]["findings"]].count("phone") == 1
    profile.write_text("phone: [[broken\n", encoding="utf-8")
    os.utime(profile, (time.time() + 10, time.time() + 10))
    inspector.reload_if_changed()
    flow = order_flow()
    flow.request.content = b"data=%7B%22q%22%3A%2213912345678%22%7D"
    run(env["addons"], flow)
    assert "phone" in [f["category"] for f in flow.metadata[META]["findings"]]
    (rejected,) = lines(env["log"], "profile_rejected")
    assert rejected["errors"] and "YAML syntax error" in rejected["errors"][0]


def test_profile_readable_by_others_is_warned_about(env: dict[str, Any]) -> None:
    env["profile"].chmod(0o644)
    env["tctx"].options.update(shopguard_profile=str(env["profile"]))
    (warning,) = lines(env["log"], "profile_warning")
    assert "chmod 600" in warning["warning"]


def test_missing_or_invalid_profile_is_an_options_error(
    env: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(exceptions.OptionsError, match="profile not found"):
        env["tctx"].options.update(shopguard_profile=str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("email: [1, 2]\nphone: x\n", encoding="utf-8")
    with pytest.raises(exceptions.OptionsError, match=r"bad.yaml:2: phone: expected a list"):
        env["tctx"].options.update(shopguard_profile=str(bad))


def test_websocket_message_with_findings_gets_its_own_line(env: dict[str, Any]) -> None:
    flow = tflow.twebsocketflow()
    flow.request.host = "im.taobao.com"
    flow.request.headers["host"] = "im.taobao.com"
    for addon in env["addons"]:
        if hasattr(addon, "requestheaders"):
            addon.requestheaders(flow)
    from mitmproxy import websocket
    from wsproto.frame_protocol import Opcode

    assert flow.websocket is not None
    flow.websocket.messages.append(
        websocket.WebSocketMessage(Opcode.TEXT, True, b'{"to": {"mobile": "13800138000"}}')
    )
    for addon in env["addons"]:
        if hasattr(addon, "websocket_message"):
            addon.websocket_message(flow)
    (line,) = lines(env["log"], "ws_message")
    assert line["direction"] == "sent" and line["site"] == "taobao"
    assert [(f["category"], f["location"]) for f in line["findings"]] == [
        ("phone", "ws:$.to.mobile")
    ]


@pytest.mark.parametrize(
    ("method", "host", "path", "headers", "body", "category"),
    [
        ("GET", "s.taobao.com", "/search?%E7%8E%8B%E5%B0%8F%E6%98%8E=1", {}, b"", "name"),
        (
            "POST",
            "s.taobao.com",
            "/p",
            {"content-type": "application/x-www-form-urlencoded"},
            "王小明=1".encode(),
            "name",
        ),
        (
            "POST",
            "s.taobao.com",
            "/p",
            {"content-type": "application/json"},
            '{"王小明": 1}'.encode(),
            "name",
        ),
        ("GET", "s.taobao.com", "/p", {"cookie": "王小明=1"}, b"", "name"),
        ("GET", "s.taobao.com", "/search?13800138000=1", {}, b"", "phone"),
        ("GET", "s.taobao.com", "/search?Wang%20Xiaoming=1", {}, b"", "name"),
        ("GET", "s.taobao.com", "/search?wang.xiaoming@example.com", {}, b"", "email"),
        ("WANG13800138000", "s.taobao.com", "/p", {}, b"", None),
        ("GET", "s.taobao.com", "/p/;jsessionid=1;mobile=13800138000", {}, b"", None),
        (
            "POST",
            "s.taobao.com",
            "/p",
            {"content-type": "application/json"},
            b'{"' + MD5_EMAIL.encode() + b'": {"100083": 1, "email": "wang.xiaoming@example.com"}}',
            "email",
        ),
        ("GET", "王小明.taobao.com", "/p", {}, b"", None),
        ("GET", "s.taobao.com:13800138000", "/p", {}, b"", None),
    ],
)
def test_personal_data_in_names_methods_and_hosts_never_reaches_the_log(
    env: dict[str, Any],
    method: str,
    host: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    category: str | None,
) -> None:
    """A client may put anything where names go: a key, a method, a host label. What the log
    writes there is masked, and a key that is the user's own data is a finding."""
    flow = tflow.tflow(resp=True)
    flow.request.method, flow.request.path, flow.request.content = method, path, body
    flow.request.host = host.partition(":")[0]
    flow.request.headers["host"] = host
    flow.request.headers.update(headers)
    run(env["addons"], flow)
    (line,) = lines(env["log"], "flow")
    if category is not None:
        assert category in {f["category"] for f in line["findings"]}
    text = env["log"].read_text(encoding="utf-8")
    for raw in (
        "王小明",
        "13800138000",
        "wang.xiaoming@example.com",
        "WANG",
        MD5_EMAIL,
        "100083",
        "Xiaoming",
    ):
        assert raw not in text


def _phone_found(env: dict[str, Any], number: str = "13912345678") -> bool:
    flow = order_flow()
    flow.request.content = f"data=%7B%22q%22%3A%22{number}%22%7D".encode()
    run(env["addons"], flow)
    return "phone" in [f["category"] for f in flow.metadata[META]["findings"]]


def test_a_deleted_profile_keeps_the_last_good_one_and_says_so(
    env: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Editors and sync tools replace files: a profile that is gone for a moment is not an
    empty one, and a broken edit after it still falls back to the real last good profile."""
    profile: Path = env["profile"]
    inspector = env["addons"][1]
    profile.write_text('phone: ["+86 139 1234 5678"]\n', encoding="utf-8")
    os.utime(profile, (time.time() + 5, time.time() + 5))
    inspector.reload_if_changed()
    profile.unlink()
    inspector.reload_if_changed()
    inspector.reload_if_changed()  # (said once)
    assert _phone_found(env)
    (rejected,) = lines(env["log"], "profile_rejected")
    assert rejected["errors"] == [
        f"{profile}: the file is gone (deleted or moved); save it empty to clear the profile"
    ]
    assert "keeps the last good profile" in caplog.text  # (on the terminal too)
    profile.write_text("phone: [[broken\n", encoding="utf-8")
    inspector.reload_if_changed()
    assert _phone_found(env)
    assert len(lines(env["log"], "profile_rejected")) == 2
    profile.write_text("", encoding="utf-8")  # saved empty: the user clears it
    os.utime(profile, (time.time() + 10, time.time() + 10))
    inspector.reload_if_changed()
    assert not _phone_found(env)
    assert lines(env["log"], "profile_loaded")[-1]["values"] == 0


def test_no_profile_file_is_said_not_counted_as_an_empty_one(
    env: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nowhere"))
    env["tctx"].options.update(shopguard_profile="")
    (missing,) = lines(env["log"], "profile_missing")
    assert missing["path"].endswith("profile.yaml") and "no profile" in missing["note"]
