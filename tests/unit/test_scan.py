"""`shopguard scan` over HAR and mitmproxy flow files: formats, exit codes, bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from mitmproxy import io
from mitmproxy.test import tflow

from shopguard.cli.main import main

PROFILE = Path(__file__).resolve().parents[1] / "fixtures" / "corpus" / "profile.yaml"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def har(entries: list[dict[str, object]], version: str = "1.2") -> dict[str, object]:
    return {"log": {"version": version, "creator": {"name": "test"}, "entries": entries}}


def entry(url: str, headers: list[tuple[str, str]] = (), body: str | None = None) -> dict:  # type: ignore[assignment]
    request: dict[str, object] = {
        "method": "POST" if body else "GET",
        "url": url,
        "headers": [{"name": k, "value": v} for k, v in headers],
    }
    if body is not None:
        request["postData"] = {"mimeType": "application/json", "text": body}
    return {"request": request, "response": {"status": 200, "headers": []}}


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    digest = hashlib.sha256(b"wang.xiaoming@example.com").hexdigest()
    path = tmp_path / "capture.har"
    path.write_text(
        json.dumps(
            har(
                [
                    entry("https://www.taobao.com/", [("cookie", "cna=Qm9vZ2llV29vZ2ll")]),
                    entry("https://example.org/plain"),
                    entry(f"https://connect.facebook.net/tr?ud[em]={digest}"),
                    entry(
                        "https://h5api.m.taobao.com/h5/x/1.0/",
                        [("content-type", "application/json")],
                        '{"receiverMobile": "13800138000"}',
                    ),
                ]
            )
        )
    )
    return path


def test_jsonl_one_line_per_finding_with_flow_file_url_host_site(
    capture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", str(capture), "--profile", str(PROFILE), "--format", "jsonl"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    by_flow = {(r["flow"], r["category"]): r for r in rows}
    assert set(by_flow) == {(0, "tracking_id"), (2, "email"), (3, "phone")}
    email = by_flow[(2, "email")]
    assert email["site"] is None and email["host"] == "connect.facebook.net"  # every entry
    assert email["transform"] == "sha256" and email["file"] == str(capture)
    assert "ud[em]=***" in email["url"]
    assert by_flow[(3, "phone")]["site"] == "taobao"
    assert "13800138000" not in json.dumps(rows)


def test_table_lists_hosts_and_categories(
    capture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", str(capture), "--profile", str(PROFILE)]) == 0
    out = capsys.readouterr().out
    assert "h5api.m.taobao.com" in out and "phone" in out
    assert "4 requests scanned" in out


def test_fail_on_exits_1_only_when_found(capture: Path) -> None:
    assert main(["scan", str(capture), "--profile", str(PROFILE), "--fail-on", "phone"]) == 1
    assert main(["scan", str(capture), "--profile", str(PROFILE), "--fail-on", "geo"]) == 0
    assert main(["scan", str(capture), "--fail-on", "telephone"]) == 2


def test_mitmproxy_flow_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = tflow.tflow(resp=True)
    flow.request.host = "www.temu.com"
    flow.request.path = "/api/addr?mobile=13912345678"
    path = tmp_path / "flows.mitm"
    with path.open("wb") as out:
        io.FlowWriter(out).add(flow)
    assert main(["scan", str(path), "--format", "json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["site"] == "temu" and result["flow"] == 0
    assert [f["location"] for f in result["findings"]] == ["query:mobile"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"log": {"version": "1.2", "entries": [', "not valid JSON"),
        (b'{"hello": 1}', "not a HAR file"),
        (json.dumps(har([], version="2.0")).encode(), "HAR version 2.0 is not supported"),
        (b"", "empty file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "not a readable mitmproxy flow"),
    ],
)
def test_unreadable_input_exits_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    path = tmp_path / "broken.har"
    path.write_bytes(content)
    assert main(["scan", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err


def test_bad_entries_are_reported_and_the_rest_scanned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "odd.har"
    body = bytes([0xFF, 0xFE, 0x00]).decode("latin-1")
    entries = [{"request": {"method": "GET"}}, entry("https://a.example/?mobile=13912345678"),
               entry("https://a.example/", body=body)]  # fmt: skip
    path.write_text(json.dumps(har(entries)))
    assert main(["scan", str(path), "--format", "jsonl"]) == 0
    captured = capsys.readouterr()
    assert f"{path}: entry 0: no request URL" in captured.err
    assert [json.loads(x)["flow"] for x in captured.out.splitlines()] == [1]


def test_scan_masks_a_host_label_that_is_personal_data() -> None:
    from shopguard.cli.scan import masked_url
    from shopguard.engine.detect import Detector
    from shopguard.engine.extract import extract
    from shopguard.engine.request import PlainRequest

    url = "https://11010519491231002x.m.taobao.com/a?b=1"
    findings = Detector(b"k").detect(extract(PlainRequest("GET", url)))
    assert masked_url(url, findings, {}) == "https://***.m.taobao.com/a?b=***"


def test_table_prints_wire_data_as_written_never_as_markup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = hashlib.sha256(b"wang.xiaoming@example.com").hexdigest()
    path = tmp_path / "ud[em] [red].har"  # a file name may hold markup too
    path.write_text(json.dumps(har([entry(f"https://connect.facebook.net/tr?ud[em]={digest}")])))
    assert main(["scan", str(path), "--profile", str(PROFILE)]) == 0
    out = capsys.readouterr().out
    assert "ud[em] [red].har" in out
    assert "email: query:ud%5Bem%5D [sha256]" in out  # the transform is not read as a style


def test_table_cells_are_text_whatever_they_hold(capsys: pytest.CaptureFixture[str]) -> None:
    import io as stdio

    from shopguard.cli.scan import Result, _print_table
    from shopguard.engine.findings import Finding

    odd = "ud[/] [em]x[/em] [bold]"
    finding = Finding("phone", f"query:{odd}", "pattern", f"{odd}", 0.9, "138****8000", "f")
    results = [
        Result("ud[em] [bold].har", 0, "", f"{odd}.example", odd, "full", [finding]),
        Result("b.har", 1, "", "", None, "none", [], f"problem {odd}"),
    ]
    out = stdio.StringIO()
    _print_table(results, out)
    text = out.getvalue()
    assert "ud[em] [bold].har" in text
    assert text.count(odd) == 5, text  # host, site, location, transform, problem


def test_an_unexpected_failure_is_not_the_found_exit_code(
    capture: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shopguard.cli import scan

    def broken(*args: object) -> object:
        raise RuntimeError("cannot handle 'wang.xiaoming@example.com' at 13800138000")

    monkeypatch.setattr(scan, "scan_files", broken)
    assert main(["scan", str(capture), "--fail-on", "phone"]) == 3
    err = capsys.readouterr().err
    assert "shopguard: internal error (a bug in shopguard, please report it)" in err
    assert "RuntimeError" in err
    assert "13800138000" not in err and "wang.xiaoming" not in err


def test_jsonl_url_masks_bare_tokens_and_value_like_query_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "names.har"
    urls = [
        "https://www.taobao.com/search?wang.xiaoming@example.com&q=bag",
        "https://www.taobao.com/s?13800138000=x&mobile=13912345678",
        "https://www.taobao.com/s?mobile=13912345678&Wang%20Xiaoming&user_13700000000=&spm=",
    ]
    path.write_text(json.dumps(har([entry(url) for url in urls])))
    assert main(["scan", str(path), "--format", "jsonl"]) == 0  # no profile: patterns only
    shown = {json.loads(x)["url"] for x in capsys.readouterr().out.splitlines()}
    assert shown == {
        "https://www.taobao.com/search?{email:w***@example.com}&q=***",  # a name found: its mask
        "https://www.taobao.com/s?***=***&mobile=***",
        "https://www.taobao.com/s?mobile=***&***&***=&spm=",
    }
