"""`shopguard policy explain` and `shopguard policy test`, and the shipped defaults' examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shopguard import paths
from shopguard.cli.main import main
from shopguard.engine.settings import load_config

SITE = """\
site: bazaar
hosts: ["*.bazaar.example"]
first_party: ["www.bazaar.example"]
mode: observe
trackers:
  block: ["beacon.bazaar.example"]
  strip_params: [ref]
  strip_fields: [deviceToken]
examples:
  - request: "GET https://beacon.bazaar.example/b.gif"
    expect: {action: block, status: 204}
  - request: "GET https://www.bazaar.example/item?ref=ad&id=1"
    expect: {action: pass, strips: [query:ref]}
"""


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def user(tmp_path: Path) -> Path:
    directory = tmp_path / "user"
    (directory / "sites").mkdir(parents=True)
    (directory / "sites" / "bazaar.yaml").write_text(SITE, encoding="utf-8")
    return directory


def test_explain_a_blocked_beacon(user: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = "https://beacon.bazaar.example/b.gif?x=1"
    assert (
        main(["policy", "explain", url, "--header", "Sec-Fetch-Dest: image", "--config", str(user)])
        == 0
    )
    out = capsys.readouterr().out
    assert "site: bazaar (user/sites/bazaar.yaml), mode observe, third party" in out
    assert "block  request  204  user/sites/bazaar.yaml:6" in out
    assert "(the site is in observe mode: these are only logged until it is enforced)" in out
    assert "not sent: answered by shopguard with 204" in out


def test_explain_shows_the_request_as_it_would_leave(
    user: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"deviceToken": "abc123", "q": "bag"}), encoding="utf-8")
    argv = [
        "policy", "explain", "https://www.bazaar.example/s?ref=ad&mobile=13912345678",
        "--header", "content-type: application/json", "--body", f"@{body}",
        "--config", str(user),
    ]  # fmt: skip
    assert main([*argv, "--raw"]) == 0
    out = capsys.readouterr().out
    assert "phone         query:mobile  pattern 0.90  139****5678" in out
    assert "strip  query:ref  user/sites/bazaar.yaml:7" in out
    assert "strip  body:$.deviceToken  user/sites/bazaar.yaml:8" in out
    assert "  POST https://www.bazaar.example/s?mobile=13912345678\n" in out
    assert '  {"q":"bag"}' in out


@pytest.mark.parametrize(
    ("content_type", "body", "shown"),
    [
        ("application/json", '{"deviceToken": "abc123", "q": "Wang", "n": [1, true]}',
         '{"q": "***", "n": ["***", true]}'),
        ("application/x-www-form-urlencoded", "deviceToken=abc&name=Wang&13800138000",
         "name=***&***"),
        ("text/plain", "Wang Xiaoming 13800138000", "(25 bytes of text/plain; --raw shows them)"),
    ],
)  # fmt: skip
def test_explain_masks_the_values_of_the_request_unless_raw(
    user: Path, capsys: pytest.CaptureFixture[str], content_type: str, body: str, shown: str
) -> None:
    argv = [
        "policy", "explain", "https://www.bazaar.example/s?ref=ad&mobile=13912345678&Wang",
        "--header", f"content-type: {content_type}", "--header", "Cookie: sid=Wang; cna=Xyz1",
        "--header", "X-Name: Wang Xiaoming", "--header", "Referer: https://www.bazaar.example/?u=Wang",
        "--body", body, "--config", str(user),
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "  POST https://www.bazaar.example/s?mobile=***&***\n" in out
    assert f"  content-type: {content_type}\n" in out
    assert "  Cookie: sid=***; cna=***\n" in out and "  X-Name: ***\n" in out
    assert "  Referer: https://www.bazaar.example/?u=***\n" in out
    assert f"\n  {shown}\n" in out
    assert "Wang" not in out and "13912345678" not in out and "13800138000" not in out
    assert "--raw shows the values" in out


def test_explain_a_site_shopguard_does_not_handle(
    user: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "explain", "https://example.org/", "--config", str(user)]) == 0
    assert "example.org: no configured site handles it" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--header", "no colon"], "--header: expected NAME:VALUE, got 'no colon'"),
        (["--body", "@/nonexistent/body"], "--body: cannot read /nonexistent/body"),
    ],
)
def test_explain_usage_errors(
    user: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    url = "https://www.bazaar.example/"
    assert main(["policy", "explain", url, *argv, "--config", str(user)]) == 2
    assert message in capsys.readouterr().err


def test_policy_test_passes(user: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "test", "bazaar", "-v", "--config", str(user)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "ok   user/sites/bazaar.yaml:10: GET https://beacon.bazaar.example/b.gif",
        "ok   user/sites/bazaar.yaml:12: GET https://www.bazaar.example/item?ref=ad&id=1",
        "2 of 2 examples pass",
    ]


def test_policy_test_reports_each_failure(user: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = SITE.replace("status: 204", "status: 403").replace(
        "strips: [query:ref]", "strips: [query:id]"
    )
    broken += (
        '  - request: "GET https://www.other.example/"\n'
        "    expect: {action: pass, findings: [phone]}\n"
    )
    (user / "sites" / "bazaar.yaml").write_text(broken, encoding="utf-8")
    assert main(["policy", "test", "bazaar", "--config", str(user)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "FAIL user/sites/bazaar.yaml:10: GET https://beacon.bazaar.example/b.gif",
        "     expected status 403, got 204",
        "FAIL user/sites/bazaar.yaml:12: GET https://www.bazaar.example/item?ref=ad&id=1",
        "     expected a strip of query:id",
        "FAIL user/sites/bazaar.yaml:14: GET https://www.other.example/",
        "     the request belongs to no site, not bazaar",
        "0 of 3 examples pass, 3 fail",
    ]


def test_the_shipped_defaults_pass_their_own_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "test"]) == 0, capsys.readouterr().out
    config = load_config(paths.shipped_config_dir(), None)
    for site in config.enabled_sites:
        assert len(site.policy.examples) >= 5, site.name
        assert site.policy.block and site.policy.strip_params, site.name


def test_import_writes_a_site_file_the_loader_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "import"
    config = tmp_path / "imported"
    (config / "sites").mkdir(parents=True)
    target = config / "sites" / "taobao.yaml"
    argv = ["policy", "import", "clearurls", str(fixtures / "clearurls-sample.json")]
    assert main([*argv, "--site", "taobao", "-o", str(target)]) == 0
    assert "rules imported" in capsys.readouterr().err
    site = load_config(paths.shipped_config_dir(), config).site("taobao")
    assert site is not None and site.file.endswith("imported/sites/taobao.yaml")
    imported = [
        r for r in site.policy.strip_params if r.file.endswith("imported/sites/taobao.yaml")
    ]
    assert {"ut_sk", "sp_tk"} <= {r.name for r in imported}
    assert main([*argv, "--site", "taobao", "-o", str(target)]) == 2  # never overwrites


def test_an_unexpected_failure_exits_3_not_1(
    user: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shopguard.cli import policy

    def broken(*args: object) -> list[str]:
        raise KeyError("13800138000")

    monkeypatch.setattr(policy, "run_example", broken)
    assert main(["policy", "test", "--config", str(user)]) == 3  # 1 means an example failed
    err = capsys.readouterr().err
    assert "internal error" in err and "KeyError" in err and "13800138000" not in err


def test_policy_test_of_an_unknown_site_is_a_usage_error(
    user: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "test", "bazaar", "nosuchsite", "--config", str(user)]) == 2
    captured = capsys.readouterr()
    assert "examples pass" not in captured.out
    assert "shopguard: policy test: no site named nosuchsite (the sites: alibaba," in captured.err


def test_policy_test_of_a_disabled_site_says_so(
    user: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (user / "sites" / "temu.yaml").write_text("enabled: false\n", encoding="utf-8")
    assert main(["policy", "test", "temu", "--config", str(user)]) == 2
    err = capsys.readouterr().err
    assert "shopguard: policy test: temu is disabled (enabled: false in " in err


def test_an_example_on_a_shared_host_without_referer_is_told_why_it_fails(
    user: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (user / "sites" / "taobao.yaml").write_text(
        "extends: default\n"
        "examples:\n"
        '  - request: "GET https://gm.mmstat.com/v.gif?cna=x"\n'
        "    expect: {action: block}\n",
        encoding="utf-8",
    )
    assert main(["policy", "test", "taobao", "--config", str(user)]) == 1
    assert (
        "     the request belongs to alibaba, not taobao: gm.mmstat.com is shared, "
        "give the example the Referer of a taobao page"
    ) in capsys.readouterr().out.splitlines()
