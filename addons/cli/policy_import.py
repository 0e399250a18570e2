"""`shopguard policy import`: a site's policy from ClearURLs providers or Adblock-syntax lists.

Only what concerns the site is read: a ClearURLs provider whose URL pattern names one of the
site's hosts, an Adblock line whose `||host` or `$domain=` does. What shopguard can express
becomes `trackers.block`, `trackers.strip_params` or `allow`; everything else that concerns the
site is listed as unsupported (in the YAML as comments, and on stderr), never dropped silently.
Lines about other sites are only counted. A site that is not configured gets a complete site
file whose hosts are the site's own domains named by the rules (`--site ebay`: `*.ebay.com`…).
The parsing is in `shopguard.engine.clearurls` and `.adblock`, the YAML in `.sitefile`; this
module reads the file, picks the parser and prints.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from shopguard import paths
from shopguard.cli.common import load_or_report
from shopguard.cli.exits import EXIT_OK, EXIT_USAGE, guarded
from shopguard.engine.adblock import from_abp
from shopguard.engine.clearurls import from_clearurls, read_providers
from shopguard.engine.imported import ImportFailure, new_site
from shopguard.engine.sitefile import render

KINDS = ("clearurls", "abp")
_SITE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _fail(message: str) -> int:
    print(f"shopguard: {message}", file=sys.stderr)
    return EXIT_USAGE


def _read(kind: str, path: Path) -> Any:
    """The file's ClearURLs JSON or Adblock lines; ImportFailure says what is wrong where."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFailure(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFailure(f"{path}:{line}: not UTF-8 text") from exc
    if kind == "clearurls":
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportFailure(
                f"{path}:{exc.lineno}: invalid JSON (column {exc.colno}: {exc.msg})"
            ) from exc
        read_providers(parsed)  # fails early, before the configuration is read
        return parsed
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ImportFailure(f"{path}:{line}: binary data, not an Adblock filter list")
    if text.lstrip().startswith("{"):
        raise ImportFailure(
            f"{path}:1: JSON, not an Adblock filter list (ClearURLs? use clearurls)"
        )
    return text.split("\n")  # not splitlines(): line numbers as editors count them


def _shipped(name: str) -> bool:
    """Whether `name` is a shipped site (its file, `sites/NAME.yaml`, is among the defaults)."""
    return (paths.shipped_config_dir() / "sites" / f"{name}.yaml").is_file()


def _report_failure(path: Path, exc: ImportFailure) -> int:
    text = str(exc)
    return _fail(text if path.name in text else f"{path}: {text}")


@guarded
def import_rules(args: argparse.Namespace) -> int:
    """`shopguard policy import (clearurls|abp) FILE --site NAME [-o OUT]`."""
    kind: str = args.kind
    path: Path = Path(args.file)
    name: str = args.site
    output: Path | None = args.output
    if kind not in KINDS:
        return _fail(f"unknown rule format {kind!r} (expected {' or '.join(KINDS)})")
    if not _SITE_NAME.match(name):
        return _fail(f"--site: expected a lower-case site name like 'taobao', got {name!r}")
    if output is not None and output.exists():
        return _fail(f"{output} exists: not overwritten (remove it or pick another -o file)")
    try:
        content = _read(kind, path)
    except ImportFailure as exc:
        return _report_failure(path, exc)
    config = load_or_report(args.config)
    if config is None:
        return EXIT_USAGE
    site = config.site(name) or new_site(name)
    try:
        if kind == "clearurls":
            imported = from_clearurls(content, site, path.name)
        else:
            imported = from_abp(content, site, path.name)
    except ImportFailure as exc:
        return _report_failure(path, exc)
    text = render(imported, site, _shipped(name))
    for item in imported.unsupported:
        where = item.where.removeprefix("line ")
        location = f"{path}:{where}" if where != item.where else f"{path}: {where}"
        print(f"{location}: unsupported: {item.message()}", file=sys.stderr)
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            with output.open("x", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            return _fail(f"cannot write {output}: {exc.strerror or exc}")
    print(f"{path.name} -> site {name}: {imported.summary(' (listed above)')}", file=sys.stderr)
    return EXIT_OK
