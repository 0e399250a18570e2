"""`shopguard policy import`: the command reads the file, prints the site file or writes it (never
over one), lists unsupported rules on stderr, and names the file in every usage error."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from shopguard.cli.main import main
from shopguard.cli.policy_import import import_rules
from tests.support.imports import CLEARURLS, MADE_UP, SHORTENER


def args(tmp_path: Path, kind: str, file: Path, name: str, output: Path | None = None) -> Any:
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    return argparse.Namespace(kind=kind, file=file, site=name, output=output, config=config)


def test_command_prints_yaml_and_lists_unsupported_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made_up = tmp_path / "made-up.txt"
    made_up.write_text(MADE_UP, encoding="utf-8")
    assert import_rules(args(tmp_path, "abp", made_up, "taobao")) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)["extends"] == "default"
    assert f"{made_up}:6: unsupported: ||log.mmstat.com^$redirect=1x1.gif" in err
    assert err.rstrip().endswith(
        "2 rules imported, 11 unsupported (listed above), 3 lines about other sites skipped"
    )


def test_command_writes_the_output_file_but_never_over_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "taobao.yaml"
    assert import_rules(args(tmp_path, "clearurls", CLEARURLS, "taobao", out_file)) == 0
    written = out_file.read_text(encoding="utf-8")
    assert "extends: default" in written and capsys.readouterr().out == ""
    assert import_rules(args(tmp_path, "clearurls", CLEARURLS, "taobao", out_file)) == 2
    assert f"{out_file} exists" in capsys.readouterr().err
    assert out_file.read_text(encoding="utf-8") == written


@pytest.mark.parametrize(
    ("kind", "content", "name", "message"),
    [
        ("clearurls", '{"providers": {"x": ', "taobao", "{file}:1: invalid JSON"),
        ("clearurls", '{"rules": []}', "taobao", '{file}: expected ClearURLs rules: {"providers"'),
        ("clearurls", '{"providers": {"p": {"urlPattern": "x", "rules": "spm"}}}', "taobao",
         '{file}: provider "p": "rules" must be a list'),
        ("abp", "! ok\n||a.example^\n\x00\x01", "taobao", "{file}:3: binary data"),
        ("abp", '{"providers": {}}', "taobao", "{file}:1: JSON, not an Adblock filter list"),
        ("abp", "||other.example^\n", "ebay", "site 'ebay' is not configured and no rule in"),
        ("abp", "||ebay.com^\n", "Ebay!", "--site: expected a lower-case site name"),
    ],
)  # fmt: skip
def test_bad_input_is_a_usage_error_naming_the_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    content: str,
    name: str,
    message: str,
) -> None:
    bad = tmp_path / "input.txt"
    bad.write_text(content, encoding="utf-8")
    assert import_rules(args(tmp_path, kind, bad, name)) == 2
    out, err = capsys.readouterr()
    assert out == "" and message.replace("{file}", str(bad)) in err
    if "site 'ebay'" in message:
        assert "input.txt" in err


def test_unreadable_and_non_utf8_files_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.txt"
    assert import_rules(args(tmp_path, "abp", missing, "taobao")) == 2
    assert f"cannot read {missing}" in capsys.readouterr().err
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"||a.example^\n||caf\xe9.example^\n")
    assert import_rules(args(tmp_path, "abp", latin, "taobao")) == 2
    assert f"{latin}:2: not UTF-8 text" in capsys.readouterr().err


def test_written_files_pass_policy_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new site's file and a shipped site's file, with unsupported rules listed at the end."""
    config = tmp_path / "config"
    (config / "sites").mkdir(parents=True)
    made_up = tmp_path / "made-up.txt"
    made_up.write_text(MADE_UP, encoding="utf-8")
    for kind, source, name in [("abp", SHORTENER, "baidu"), ("abp", made_up, "taobao")]:
        argv = ["policy", "import", kind, str(source), "--site", name, "--config", str(config)]
        assert main([*argv, "-o", str(config / "sites" / f"{name}.yaml")]) == 0
    assert "# unsupported (line 2)" in (config / "sites" / "taobao.yaml").read_text("utf-8")
    capsys.readouterr()
    assert main(["policy", "check", "--config", str(config)]) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    baidu, _, decrypts = listed["baidu"].partition("  decrypts ")
    assert baidu.endswith("sites/baidu.yaml") and " 2 rules" in baidu
    assert decrypts == "*.baidu.com"
    assert tmp_path.name in listed["baidu"] and tmp_path.name in listed["taobao"]


def test_a_regex_line_is_listed_with_its_line_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    filters = tmp_path / "filters.txt"
    filters.write_text("! a list\n/mmstat\\.(com|net)\\/v\\.gif/$image\n", encoding="utf-8")
    assert import_rules(args(tmp_path, "abp", filters, "taobao")) == 0
    out, err = capsys.readouterr()
    assert f"{filters}:2: unsupported: /mmstat\\.(com|net)\\/v\\.gif/$image — regex rule" in err
    assert "# unsupported (line 2): /mmstat" in out
    assert err.rstrip().endswith("1 unsupported (listed above), 0 lines about other sites skipped")
