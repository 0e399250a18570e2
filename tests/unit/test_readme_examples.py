"""The README's policy examples, taken straight out of README.md and run: the site file passes
`policy test` and `policy explain` says what the README says it does, so the two cannot drift."""

from __future__ import annotations

import re
import shlex
import textwrap
from pathlib import Path

import pytest

from shopguard.cli.main import main

README = Path(__file__).resolve().parents[2] / "README.md"
SITE_FILE = "# ~/.config/shopguard/sites/taobao.yaml"


def blocks(language: str) -> list[str]:
    """The README's fenced code blocks in `language`."""
    text = README.read_text(encoding="utf-8")
    found = re.findall(rf"^ *```{language}\n(.*?)^ *```", text, flags=re.MULTILINE | re.DOTALL)
    return [textwrap.dedent(block) for block in found]


def commands(action: str) -> list[list[str]]:
    """Every `shopguard policy ACTION …` command line of the README's shell blocks, as argv."""
    found = []
    for block in blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():  # (continued lines joined)
            argv = shlex.split(line, comments=True)
            if argv[:3] == ["shopguard", "policy", action]:
                found.append(argv[1:])
    return found


@pytest.fixture
def readme_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config directory holding the README's example site file, as the README says to save it."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    (site_file,) = [b for b in blocks("yaml") if b.startswith(SITE_FILE)]
    config = tmp_path / "config"
    (config / "sites").mkdir(parents=True)
    (config / "sites" / "taobao.yaml").write_text(site_file, encoding="utf-8")
    return config


def test_the_readme_site_file_passes_policy_test(
    readme_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "test", "--config", str(readme_config)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert re.search(r"^(\d+) of \1 examples pass$", out, flags=re.MULTILINE), out


def test_the_readme_explain_example_lands_on_the_site_it_is_about(
    readme_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = commands("explain")[0]
    assert main([*argv, "--config", str(readme_config)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"site: taobao ({readme_config}/sites/taobao.yaml), mode enforce"), out
    assert "not sent: answered by shopguard with 204" in out


def test_the_readme_puts_shopguard_on_path_before_its_first_command() -> None:
    text = README.read_text(encoding="utf-8")
    setup = text.index('export PATH="$PWD/.venv/bin:$PATH"')
    first = re.search(r"^ *```sh\n(?:(?! *```).*\n)*? *shopguard ", text, flags=re.MULTILINE)
    assert first is not None
    assert setup < first.start(), "a bare `shopguard` command comes before the README says how"
    assert ".venv/bin/shopguard" not in text.replace("`.venv/bin/shopguard …`", "")  # one way


def test_every_shopguard_command_in_the_readme_parses() -> None:
    from shopguard.cli.main import build_parser

    parser = build_parser()
    lines = [line for block in blocks("sh") for line in block.replace("\\\n", " ").splitlines()]
    argvs = [shlex.split(line, comments=True) for line in lines]
    argvs = [a[1:] for a in argvs if a[:1] == ["shopguard"] and not any("[" in x for x in a)]
    assert len(argvs) >= 8
    for argv in argvs:
        shell = [i for i, word in enumerate(argv) if word in (">", "|", "&&")]
        parser.parse_args(argv[: shell[0]] if shell else argv)  # exits 2 on a refused one
