"""The audit log's JSON Schema (`shopguard/data/log.schema.json`): what it accepts and refuses,
the README's examples, and the checks that hold the test suite's own lines to it."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from shopguard.auditlog import AuditLog
from shopguard.engine.findings import CATEGORIES, DETECTORS
from shopguard.engine.settings import MODES
from tests.conftest import LINES
from tests.support.logschema import LineError, problem, schema, validate_file, validate_line

README = Path(__file__).resolve().parents[2] / "README.md"
STAMP = "2026-11-26T19:41:04.303614Z"
PRINT = "5f0c2a9e41d7b36a8c11"


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def json_blocks(text: str) -> list[str]:
    return re.findall(r"```json\n(.*?)```", text, flags=re.S)


def documents(block: str) -> list[Any]:
    """The JSON values of a block that holds one or several of them."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := _skip_space(block, at)) < len(block):
        value, at = decoder.raw_decode(block, at)
        found.append(value)
    return found


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def readme_flow() -> dict[str, Any]:
    (line,) = documents(json_blocks(section("## What gets logged"))[0])
    assert isinstance(line, dict)
    for item in line["findings"]:  # the README shortens most fingerprints to "…"
        if item["fingerprint"] == "…":
            item["fingerprint"] = PRINT
    return line


def readme_actions() -> list[dict[str, Any]]:
    policies = section("### Policies — what shopguard does about it")
    after = policies[policies.index("Each entry of `actions` in the log names its rule") :]
    return documents(json_blocks(after)[0])


def errors(line: Any) -> list[str]:
    return [e.message for e in Draft202012Validator(schema()).iter_errors(line)]


def finding(**changes: Any) -> dict[str, Any]:
    return {
        "category": "phone",
        "location": "body.form:data.$.receiverMobile",
        "detector": "profile",
        "transform": "",
        "confidence": 0.95,
        "preview": "138****8000",
        "fingerprint": PRINT,
    } | changes


def action(**changes: Any) -> dict[str, Any]:
    return {
        "action": "strip",
        "target": "query:spm",
        "rule": "config/sites/taobao.yaml:41",
        "applied": False,
    } | changes


def flow(**changes: Any) -> dict[str, Any]:
    return {
        "schema": 1,
        "timestamp": STAMP,
        "event": "flow",
        "site": "taobao",
        "host": "www.taobao.com",
        "method": "GET",
        "path": "/?spm=***",
        "status": 200,
        "third_party": False,
        "mode": "observe",
        "inspection": "full",
        "findings": [finding()],
        "actions": [action()],
        "duration_ms": 12.3,
    } | changes


SITES = [{"site": "taobao", "mode": "observe", "hosts": ["*.taobao.com"]}]
# one line of each event as shopguard writes it (the fields after schema, timestamp, event)
EVENTS: dict[str, dict[str, Any]] = {
    "flow": {k: v for k, v in flow().items() if k not in ("schema", "timestamp", "event")},
    "ws_message": {
        "site": "taobao",
        "host": "wss.taobao.com",
        "direction": "sent",
        "inspection": "full",
        "findings": [finding(location="ws:$.msg.mobile")],
        "actions": [action(action="replace", target="ws:$.msg.mobile", category="phone")],
    },
    "policy_loaded": {"files": ["config/shopguard.yaml"], "sites": SITES},
    "policy_rejected": {"errors": ["sites/temu.yaml:3: hosts[0]: invalid host glob '*temu.com'"]},
    "profile_loaded": {"path": "/home/me/profile.yaml", "values": 3, "pool": 2000},
    "profile_missing": {"path": "/home/me/profile.yaml", "note": "no profile: patterns only"},
    "profile_rejected": {"path": "/home/me/profile.yaml", "errors": ["profile.yaml:2: phone"]},
    "profile_warning": {"path": "/home/me/profile.yaml", "warning": "run: chmod 600"},
    "proxy_started": {
        "version": "0.1.0",
        "listen": ["127.0.0.1:8080"],
        "config": ["config/shopguard.yaml"],
        "sites": SITES,
        "confdir": "/home/me/.local/state/shopguard/mitmproxy",
        "log": "/home/me/.local/state/shopguard/flows.jsonl",
    },
    "proxy_stopped": {"reason": "SIGTERM", "uptime_s": 12.5},
    "tls_failed": {
        "site": "taobao",
        "host": "www.taobao.com",
        "error": "Client TLS handshake failed.",
        "hint": "the client refused shopguard's certificate",
    },
    "host_mismatch": {
        "site": "taobao",
        "host": "gm.mmstat.com",
        "claimed": "example.org",
        "note": "the Host header names another host",
    },
    "addon_error": {
        "addon": "Inspector",
        "hook": "request",
        "error_type": "KeyError",
        "message": "'***'",
        "site": None,
        "host": "www.taobao.com",
        "mode": "enforce",
        "outcome": "blocked",
    },
    "log_recovered": {},
}


def line_of(event: str) -> dict[str, Any]:
    return {"schema": 1, "timestamp": STAMP, "event": event, **copy.deepcopy(EVENTS[event])}


def test_the_schema_is_valid_draft_2020_12_and_lists_every_event() -> None:
    loaded = schema()
    assert loaded["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(loaded)
    assert set(loaded["properties"]["event"]["enum"]) == set(EVENTS)


def test_the_schema_names_the_engines_categories_detectors_and_modes() -> None:
    defs = schema()["$defs"]
    assert defs["category"]["enum"] == list(CATEGORIES)
    assert defs["finding"]["properties"]["detector"]["enum"] == list(DETECTORS)
    assert set(defs["mode"]["enum"]) == set(MODES)


def test_the_events_the_readme_names_are_the_schemas() -> None:
    text = section("## What gets logged")
    start = text.index("Other events:")
    other = text[start : text.index("\n\n", start)]  # that paragraph
    named = set(re.findall(r"`([a-z_]+)`", other)) | {"flow", "ws_message"}
    assert named == set(schema()["properties"]["event"]["enum"])


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_a_line_of_each_event_is_accepted(event: str) -> None:
    assert errors(line_of(event)) == []


def test_the_readme_flow_line_is_accepted() -> None:
    line = readme_flow()
    assert [f["category"] for f in line["findings"]] == ["phone", "email", "tracking_id"]
    assert errors(line) == []


def test_the_readme_actions_are_accepted_in_a_flow_line() -> None:
    actions = readme_actions()
    assert [a["action"] for a in actions] == ["strip", "replace", "block"]
    assert errors(readme_flow() | {"actions": actions}) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"error": "Server connection to ('127.0.0.1', 443) failed"},
        {"inspection": "partial", "inspection_notes": ["body over body_cap"]},
        {"inspection": "none", "actions": [{"action": "block", "reason": "log unavailable"}]},
        {"via": "temu", "site": "third-party-pixels", "third_party": True},
        {"addon_error": "KeyError in Inspector.request"},
        {
            "findings": [
                finding(
                    category="tracking_id",
                    location="cookie:cna",
                    detector="tracker",
                    linked_from="cookie:cna@www.taobao.com",
                    value="Zm9vYmFyMTIz",
                )
            ]
        },
        {
            "actions": [
                action(action="block", target="request", applied=True, status=204),
                action(action="resign", target="query:sign", rule="", reason="data was edited"),
            ]
        },
    ],
    ids=["error", "notes", "log-unavailable", "via", "addon-error", "linked-raw", "block-resign"],
)
def test_the_optional_flow_fields_are_accepted(changes: dict[str, Any]) -> None:
    line = flow(**changes)
    if "error" in changes:
        del line["status"]
    assert errors(line) == []


@pytest.mark.parametrize("field", schema()["$defs"]["flow"]["required"])
def test_a_flow_line_without_a_required_field_is_refused(field: str) -> None:
    line = flow()
    del line[field]
    assert f"'{field}' is a required property" in errors(line)


@pytest.mark.parametrize("event", sorted(e for e in EVENTS if EVENTS[e] and e != "flow"))
def test_every_field_of_the_other_events_is_required(event: str) -> None:
    for field in EVENTS[event]:
        line = line_of(event)
        del line[field]
        assert f"'{field}' is a required property" in errors(line), field


def test_a_flow_line_with_neither_status_nor_error_is_refused() -> None:
    line = flow()
    del line["status"]
    assert errors(line)


@pytest.mark.parametrize(
    ("line", "where"),
    [
        (flow(findings=[finding(category="passport")]), "$.findings[0].category"),
        (flow(findings=[finding(detector="guess")]), "$.findings[0].detector"),
        (flow(mode="audit"), "$.mode"),
        (flow(inspection="some"), "$.inspection"),
        (flow(actions=[action(action="log")]), "$.actions[0].action"),
        (flow(actions=[action(category="shoe_size")]), "$.actions[0].category"),
        (flow(findings=[finding(confidence=1.5)]), "$.findings[0].confidence"),
        (flow(findings=[finding(fingerprint="13800138000")]), "$.findings[0].fingerprint"),
        (flow(findings=[finding(location="body.json:mobile")]), "$.findings[0].location"),
        (flow(actions=[action(status=204)]), "$.actions[0].action"),  # a status: blocks only
        (flow(actions=[{"action": "strip", "reason": "log unavailable"}]), "$.actions[0].action"),
        (flow(status="200"), "$.status"),
        (flow(third_party="no"), "$.third_party"),
        (flow(schema=2), "$.schema"),
        (flow(timestamp="26/11/2026 19:41"), "$.timestamp"),
        (flow(event="request"), "$.event"),
        (line_of("addon_error") | {"outcome": "ignored"}, "$.outcome"),
        (line_of("ws_message") | {"direction": "both"}, "$.direction"),
        (line_of("ws_message") | {"findings": [], "actions": []}, "should be non-empty"),
    ],
    ids=[
        "category",
        "detector",
        "mode",
        "inspection",
        "action",
        "action-category",
        "confidence",
        "fingerprint",
        "location",
        "status-on-strip",
        "log-unavailable-strip",
        "status-text",
        "third-party-text",
        "schema-version",
        "timestamp",
        "event",
        "outcome",
        "direction",
        "ws-message-with-nothing",
    ],
)
def test_a_value_outside_the_schema_is_refused(line: dict[str, Any], where: str) -> None:
    message = problem(line)
    assert message is not None and where in message, message


@pytest.mark.parametrize(
    "line",
    [
        flow(cookies="cna=Zm9vYmFy"),
        flow(findings=[finding(raw="13800138000")]),
        flow(actions=[action(value="13800138000")]),
        flow(actions=[{"action": "block", "reason": "log unavailable", "applied": True}]),
        *[line_of(event) | {"extra": 1} for event in sorted(EVENTS)],
    ],
    ids=["flow", "finding", "action", "log-unavailable-action", *sorted(EVENTS)],
)
def test_an_extra_field_is_refused(line: dict[str, Any]) -> None:
    message = problem(line)
    assert message is not None and "Additional properties are not allowed" in message


def test_a_refused_line_is_explained_by_event_and_place() -> None:
    message = problem(flow(findings=[finding(category="passport")]))
    assert message is not None
    assert "'flow'" in message and "$.findings[0].category" in message and "passport" in message
    with pytest.raises(LineError, match="'passport' is not one of"):
        validate_line(flow(findings=[finding(category="passport")]))


def test_a_log_file_with_a_refused_line_names_the_file_and_line(tmp_path: Path) -> None:
    log = tmp_path / "flows.jsonl"
    bad = flow(extra=True)
    log.write_text(json.dumps(line_of("log_recovered")) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(LineError, match=rf"{re.escape(str(log))}:2: .*'flow'.*'extra'"):
        validate_file(log)
    log.write_text(json.dumps(line_of("log_recovered")) + "\n")
    assert validate_file(log) == 1


def test_a_line_written_through_the_audit_log_is_held_to_the_schema(tmp_path: Path) -> None:
    """The suite's own check sits where every line passes: a line the schema refuses, written
    in this process, is caught (and taken here, so that it does not fail this test)."""
    LINES.take()
    audit = AuditLog(tmp_path / "flows.jsonl", 1024 * 1024, 1, 0)
    audit.write("log_recovered")
    audit.write("flow", site="taobao", host="www.taobao.com")
    audit.close()
    (caught,) = LINES.take()
    assert "'flow'" in caught and "'method' is a required property" in caught
