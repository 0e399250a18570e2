"""`shopguard report` over flow logs written as the proxy writes them (each line checked
against the log's schema): what each site received, the user's own values by fingerprint,
sent versus stopped, what no rule handles, and bad input counted, never fatal."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from shopguard.cli.main import main
from shopguard.cli.report import log_files, parse_when, suggestion
from tests.support.logschema import validate_line

FP_PHONE = "0123456789abcdef0123"
FP_MAIL = "fedcba9876543210fedc"
FP_CNA = "00112233445566778899"


def finding(category: str, location: str, fingerprint: str, **extra: Any) -> dict[str, Any]:
    return {
        "category": category,
        "location": location,
        "detector": extra.pop("detector", "profile"),
        "transform": extra.pop("transform", ""),
        "confidence": 0.95,
        "preview": extra.pop("preview", "138****8000"),
        "fingerprint": fingerprint,
        **extra,
    }


def flow(
    when: str,
    host: str,
    findings: list[dict[str, Any]],
    actions: list[dict[str, Any]] | None = None,
    *,
    site: str = "taobao",
    third: bool = False,
    mode: str = "enforce",
) -> dict[str, Any]:
    line = {
        "schema": 1,
        "timestamp": f"2026-11-26T{when}Z",
        "event": "flow",
        "site": site,
        "host": host,
        "method": "GET",
        "path": "/x?a=***",
        "status": 200,
        "third_party": third,
        "mode": mode,
        "inspection": "full",
        "findings": findings,
        "actions": actions or [],
        "duration_ms": 1.0,
    }
    validate_line(line)
    return line


def started(when: str) -> dict[str, Any]:
    line = {
        "schema": 1,
        "timestamp": f"2026-11-26T{when}Z",
        "event": "proxy_started",
        "version": "0.1.0",
        "listen": ["127.0.0.1:8080"],
        "config": ["config/shopguard.yaml"],
        "sites": [{"site": "taobao", "mode": "enforce", "hosts": ["*.taobao.com"]}],
        "confdir": "/home/me/.local/state/shopguard/mitmproxy",
        "log": "/home/me/.local/state/shopguard/flows.jsonl",
    }
    validate_line(line)
    return line


STRIP_CNA = {"action": "strip", "target": "cookie:cna", "rule": "taobao.yaml:12", "applied": True}
SESSION = [
    started("10:00:00"),
    flow(
        "10:00:01", "h5api.m.taobao.com", [finding("phone", "body:$.mobile", FP_PHONE, left=True)]
    ),
    flow(
        "10:00:02",
        "log.mmstat.com",
        [
            finding("phone", "query:ph", FP_PHONE, transform="md5", left=True),
            finding(
                "tracking_id",
                "cookie:cna",
                FP_CNA,
                detector="tracker",
                preview="Zm9***",
                left=False,
            ),
        ],
        [STRIP_CNA],
        third=True,
    ),
    flow(
        "10:00:03",
        "connect.facebook.net",
        [
            finding(
                "email",
                "query:ud[em]",
                FP_MAIL,
                transform="sha256(lower)",
                left=True,
                preview="w***@example.com",
            )
        ],
        site="taobao",
        third=True,
    ),
]


def write(path: Path, lines: list[Any], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines) + tail)
    return path


def report_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["report", *argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_your_own_values_are_followed_by_fingerprint_across_hosts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = report_json(capsys, str(write(tmp_path / "flows.jsonl", SESSION)))
    site = data["sites"]["taobao"]
    (phone,) = [v for v in site["your_values"] if v["category"] == "phone"]
    assert phone["preview"] == "138****8000"  # one value, one row, whatever the form
    assert {h["host"]: (h["count"], h["how"]) for h in phone["hosts"]} == {
        "h5api.m.taobao.com": (1, ["in clear"]),
        "log.mmstat.com": (1, ["md5"]),
    }
    assert site["requests"] == 3 and site["requests_with_personal_data"] == 3


def test_sent_is_told_apart_from_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = report_json(capsys, str(write(tmp_path / "flows.jsonl", SESSION)))
    sent = {
        (s["category"], s["host"]): (s["sent"], s["stopped"])
        for s in data["sites"]["taobao"]["sent"]
    }
    assert sent[("tracking_id", "log.mmstat.com")] == (0, 1)  # stripped: it did not leave
    assert sent[("phone", "log.mmstat.com")] == (1, 0)
    (action,) = data["sites"]["taobao"]["actions"]
    assert (action["action"], action["rule"], action["count"]) == ("strip", "taobao.yaml:12", 1)


def test_what_no_rule_handles_comes_first_ranked_with_the_rule_to_add(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = report_json(capsys, str(write(tmp_path / "flows.jsonl", SESSION)))
    rows = [(r["category"], r["host"], r["third_party"]) for r in data["unhandled"]]
    # personal data to third parties first, then what the shop itself received; the stripped
    # cookie is handled
    assert rows[:2] in (
        [("phone", "log.mmstat.com", True), ("email", "connect.facebook.net", True)],
        [("email", "connect.facebook.net", True), ("phone", "log.mmstat.com", True)],
    )
    assert rows[2] == ("phone", "h5api.m.taobao.com", False)
    assert ("tracking_id", "log.mmstat.com", True) not in rows
    email = next(r for r in data["unhandled"] if r["category"] == "email")
    assert (
        email["rule_to_add"] == 'fields: {email: {action: strip, hosts: ["connect.facebook.net"]}}'
    )


def pixel(when: str, findings: list[dict[str, Any]], via: str = "taobao") -> dict[str, Any]:
    """An ad pixel fired by a page of `via`, as the proxy logs it: the pixels' site handles it."""
    line = flow(when, "connect.facebook.net", findings, site="third-party-pixels", third=True)
    line["via"] = via
    validate_line(line)
    return line


def test_a_pixels_rule_goes_into_the_pixels_file_not_the_shops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the shop whose page fired the pixel is where the report lists it; the rule that stops it
    # belongs to the site whose policy handles the request: the pixels'
    hashed = finding(
        "email", "query:ud%5Bem%5D", FP_MAIL, transform="sha256", left=True, preview="w***"
    )
    path = write(tmp_path / "flows.jsonl", [started("10:00:00"), pixel("10:00:01", [hashed])])
    (row,) = report_json(capsys, str(path))["unhandled"]
    assert (row["site"], row["rule_site"]) == ("taobao", "third-party-pixels")
    assert main(["report", str(path), "--format", "markdown"]) == 0
    assert "third-party-pixels.yaml: fields: {email:" in capsys.readouterr().out
    (own,) = report_json(capsys, str(write(tmp_path / "shop.jsonl", SESSION[:2])))["unhandled"]
    assert own["rule_site"] == "taobao"


def test_bad_lines_are_counted_not_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = {**SESSION[1], "schema": 9}
    path = write(tmp_path / "flows.jsonl", [*SESSION, "garbage", old], tail='{"schema": 1, "ev')
    path.write_text(path.read_text().replace('"garbage"', "not json at all"))
    data = report_json(capsys, str(path))
    assert data["bad_input"] | {"where": None} == {
        "garbage": 1,
        "truncated": 1,
        "other_schema": 1,
        "where": None,
    }
    assert data["sites"]["taobao"]["requests"] == 3


def test_rotations_compressed_or_not_are_read_oldest_first(tmp_path: Path) -> None:
    live = write(tmp_path / "flows.jsonl", SESSION[3:])
    write(tmp_path / "flows.jsonl.20261126T100001000000Z", SESSION[1:3])
    older = tmp_path / "flows.jsonl.20261125T090000000000Z.gz"
    older.write_bytes(gzip.compress(json.dumps(SESSION[0]).encode() + b"\n"))
    (tmp_path / "flows.jsonl.bak").write_text("not a rotation")
    assert [p.name for p in log_files(live)] == [
        older.name,
        "flows.jsonl.20261126T100001000000Z",
        "flows.jsonl",
    ]


def test_the_configured_log_and_its_rotations_are_the_default_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    log = tmp_path / "logs" / "flows.jsonl"
    log.parent.mkdir()
    (config / "shopguard.yaml").write_text(f"log:\n  path: {log}\n")
    write(log, SESSION[2:])
    gz = log.with_name("flows.jsonl.20261125T090000000000Z.gz")
    gz.write_bytes(gzip.compress("".join(json.dumps(x) + "\n" for x in SESSION[:2]).encode()))
    data = report_json(capsys, "--config", str(config))
    assert data["sites"]["taobao"]["requests"] == 3 and len(data["files"]) == 2


def test_filters_by_time_site_and_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    second = [started("11:00:00"), flow("11:00:01", "www.jd.com", [], site="jd")]
    path = str(write(tmp_path / "flows.jsonl", [*SESSION, *second]))
    assert set(report_json(capsys, path, "--session", "last")["sites"]) == {"jd"}
    assert set(report_json(capsys, path, "--site", "taobao")["sites"]) == {"taobao"}
    since = report_json(
        capsys, path, "--since", "2026-11-26T10:00:02Z", "--until", "2026-11-26T10:30Z"
    )
    assert since["sites"]["taobao"]["requests"] == 2 and "jd" not in since["sites"]
    assert report_json(capsys, path)["sessions"] == 2


def test_relative_and_local_times() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert parse_when("2h", now) == now - timedelta(hours=2)
    assert parse_when("2026-11-26T10:00Z") == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert parse_when("2026-11-26").tzinfo is not None  # (local midnight, as an instant)


@pytest.mark.parametrize("argv", [["--since", "yesterday-ish"], ["/nonexistent/flows.jsonl"]])
def test_bad_options_and_missing_input_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", *argv]) == 2
    assert capsys.readouterr().err.startswith("shopguard: ")


@pytest.mark.parametrize("form", ["table", "markdown"])
def test_table_and_markdown_answer_the_questions_in_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    path = str(write(tmp_path / "flows.jsonl", SESSION))
    assert main(["report", path, "--format", form]) == 0
    out = capsys.readouterr().out
    assert "Sent with no rule acting on it" in out
    assert "138****8000" in out and "log.mmstat.com 1× (md5)" in out
    assert "query:ud[em]" in out  # (wire data as written, never read as markup)
    for fingerprint in (FP_PHONE, FP_MAIL):
        assert fingerprint not in out  # (fingerprints are for scripts: --format json)


def test_scan_points_its_own_log_to_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "flows.jsonl", SESSION)
    assert main(["scan", str(path)]) == 2
    assert f"shopguard report {path}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("location", "rule"),
    [
        ("query:cna", 'trackers: {strip_params: ["cna"]}'),
        ("header:bx-umidtoken", 'trackers: {strip_headers: ["bx-umidtoken"]}'),
        ("cookie:cna", 'trackers: {strip_cookies: {"h5api.m.taobao.com": ["cna"]}}'),
        ("body.form:data.$.deviceId", 'trackers: {strip_fields: ["deviceId"]}'),
        # a name inside the JSON a parameter holds: only strip_fields reaches it
        ("query:data.$.params.$.myCNA", 'trackers: {strip_fields: ["myCNA"]}'),
        ("path:3", 'trackers: {block: ["h5api.m.taobao.com"]}'),
    ],
)
def test_the_rule_to_add_reaches_the_value_where_it_was_sent(location: str, rule: str) -> None:
    assert suggestion("tracking_id", location, "h5api.m.taobao.com") == rule
