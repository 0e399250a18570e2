"""The package's layers, read from its source: the engine stays pure, the addons stay apart,
and only the pipeline runs extraction, detection and redaction."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "addons"
ADDONS = ("scope", "inspector", "redactor", "recorder")  # the mitmproxy addon classes
STAGES = {  # module -> names whose use is a pipeline stage
    "shopguard.engine.extract": {"extract", "extract_message"},
    "shopguard.engine.redact": {"redact"},
    "shopguard.engine.body": {"read_body"},
    "shopguard.engine.editor": {"Editor"},
}
# the stages' own modules, which call one another in the pipeline's order
STAGE_MODULES = {"shopguard.engine.pipeline", *STAGES, "shopguard.engine.mtop"}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(("shopguard", *parts)).removesuffix(".__init__")


def _imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name or None) of every import in `path`, function-level ones included."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.module, alias.name) for alias in node.names]
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_the_package_has_modules_to_check() -> None:
    assert len(SOURCES) > 30 and any(p.name == "pipeline.py" for p in SOURCES)


@pytest.mark.parametrize("path", [p for p in SOURCES if "engine" in p.parts], ids=_module)
def test_the_engine_imports_neither_mitmproxy_nor_addons_nor_cli(path: Path) -> None:
    for module, _ in _imports(path):
        top = module.split(".")[0]
        assert top != "mitmproxy", f"{_module(path)} imports {module}"
        if top == "shopguard":
            assert module.startswith("shopguard.engine"), f"{_module(path)} imports {module}"


@pytest.mark.parametrize("addon", ADDONS)
def test_no_addon_imports_a_sibling_addon(addon: str) -> None:
    path = PACKAGE / f"{addon}.py"
    siblings = {f"shopguard.{other}" for other in ADDONS if other != addon}
    for module, name in _imports(path):
        assert module not in siblings, f"{addon} imports {module}"
        assert not (module == "shopguard" and name in ADDONS), f"{addon} imports {name}"


@pytest.mark.parametrize("path", SOURCES, ids=_module)
def test_only_the_pipeline_runs_the_stages(path: Path) -> None:
    module = _module(path)
    if module in STAGE_MODULES:
        return
    for imported, name in _imports(path):
        assert name not in STAGES.get(imported, ()), f"{module} imports {imported}.{name}"
        whole = imported if name is None else f"{imported}.{name}"
        assert whole not in ("shopguard.engine.extract", "shopguard.engine.redact"), (
            f"{module} imports the stage module {whole}"
        )
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = [
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    ]
    assert "detect" not in calls, f"{module} runs detection itself"
