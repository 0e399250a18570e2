"""`shopguard policy suggest`: from a log, the rules that stop what left unhandled (seen at least
twice), never what a site protects; `--apply` writes them into the user's site file, keeping
its comments, and the result passes the check and takes effect."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from shopguard.cli.main import main
from tests.unit.test_report import finding, flow, pixel, write

VISITOR = "a1b2c3d4e5f6a7b8c9d0"


def visits(n: int) -> list[dict[str, object]]:
    """`n` requests to a third-party tracker: a visitor-ID cookie, a session cookie the site
    protects, and a hashed e-mail; and the shop's own API with the phone (it needs it)."""
    lines = []
    for i in range(n):
        lines.append(
            flow(
                f"10:00:0{i}",
                "g.alicdn.com",
                [
                    finding("tracking_id", "cookie:x_vid", VISITOR, detector="tracker", left=True),
                    finding(
                        "tracking_id",
                        "cookie:_m_h5_tk",
                        VISITOR[::-1],
                        detector="tracker",
                        left=True,
                    ),
                    finding(
                        "email", "query:em", "ffeeddccbbaa99887766", transform="sha256", left=True
                    ),
                ],
                third=True,
            )
        )
        lines.append(
            flow(
                f"10:01:0{i}",
                "h5api.m.taobao.com",
                [finding("phone", "body:$.mobile", "0" * 20, left=True)],
            )
        )
    return lines


@pytest.fixture
def config(tmp_path: Path) -> Path:
    directory = tmp_path / "config"
    (directory / "sites").mkdir(parents=True)
    (directory / "sites" / "taobao.yaml").write_text(
        "extends: default\n# my own notes stay\nmode: enforce\n", encoding="utf-8"
    )
    return directory


def test_a_habit_seen_twice_is_suggested_with_its_evidence(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write(tmp_path / "flows.jsonl", visits(2))
    assert main(["policy", "suggest", str(log), "--config", str(config), "--fail-if-any"]) == 1
    out = capsys.readouterr().out
    assert '"g.alicdn.com":' in out and '- "x_vid"' in out  # the visitor cookie, on that host
    assert "email:" in out and "action: strip" in out and '- "g.alicdn.com"' in out
    assert "seen 2x" in out and "cookie:x_vid" in out  # the evidence, masked
    assert '- "_m_h5_tk"' not in out  # a session cookie the site calls no identifier
    assert "phone:" not in out  # the shop's own API got the phone: it needs it, left alone
    assert (config / "sites" / "taobao.yaml").read_text().count("\n") == 3  # nothing written


def test_once_is_not_a_habit(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write(tmp_path / "flows.jsonl", visits(1))
    assert main(["policy", "suggest", str(log), "--config", str(config), "--fail-if-any"]) == 0
    assert "nothing to suggest" in capsys.readouterr().out


def test_apply_writes_rules_that_pass_the_check_and_take_effect(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write(tmp_path / "flows.jsonl", visits(3))
    assert main(["policy", "suggest", str(log), "--config", str(config), "--apply"]) == 0
    text = (config / "sites" / "taobao.yaml").read_text(encoding="utf-8")
    assert text.startswith("extends: default\n# my own notes stay\nmode: enforce\n")
    assert main(["policy", "check", "--config", str(config)]) == 0
    capsys.readouterr()
    url = "https://g.alicdn.com/app/x.js?em=x"
    assert (
        main(
            [
                "policy",
                "explain",
                url,
                "--header",
                f"Cookie: x_vid={VISITOR}; _m_h5_tk=abc",
                "--header",
                "Referer: https://www.taobao.com/",
                "--config",
                str(config),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "strip" in out and "cookie:x_vid" in out
    assert (
        "cookie:_m_h5_tk" not in out.partition("actions")[2].split("request as it would leave")[0]
    )
    assert main(["policy", "suggest", str(log), "--config", str(config)]) == 0
    # the old lines still show the values leaving; the file now holds the rules for them
    assert "hold these rules already" in capsys.readouterr().out


def test_a_pixels_rule_goes_into_the_pixels_file_and_takes_effect_there(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the Meta pixel a taobao page fires is handled by the pixels' policy: a rule in
    # taobao.yaml would never apply to it
    hashed = finding(
        "email", "query:ud%5Bem%5D", "ffeeddccbbaa99887766", transform="sha256", left=True
    )
    log = write(tmp_path / "flows.jsonl", [pixel(f"10:00:0{i}", [hashed]) for i in range(2)])
    assert main(["policy", "suggest", str(log), "--config", str(config), "--apply"]) == 0
    assert "third-party-pixels.yaml: 1 rules added" in capsys.readouterr().out
    assert (config / "sites" / "taobao.yaml").read_text().count("\n") == 3  # untouched
    written = (config / "sites" / "third-party-pixels.yaml").read_text(encoding="utf-8")
    assert written.startswith("extends: default\n") and '- "connect.facebook.net"' in written
    profile = tmp_path / "profile.yaml"
    profile.write_text('email: ["buyer@example.com"]\n', encoding="utf-8")
    profile.chmod(0o600)
    hashed_mail = hashlib.sha256(b"buyer@example.com").hexdigest()
    url = f"https://connect.facebook.net/tr/?id=1&ev=PageView&ud[em]={hashed_mail}"
    argv = ["policy", "explain", url, "--header", "Referer: https://www.taobao.com/"]
    assert main([*argv, "--config", str(config), "--profile", str(profile)]) == 0
    out = capsys.readouterr().out
    actions = out.partition("actions")[2].split("request as it would leave")[0]
    assert "strip" in actions and "query:ud%5Bem%5D" in actions
    assert "third-party-pixels.yaml:" in actions  # (the rule's file and line)
