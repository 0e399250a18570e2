"""`shopguard policy suggest`: the site-file rules that would stop what the log shows leaving
with no rule acting on it, seen at least twice, each with its evidence as a comment.

It never suggests what breaks a shop: names a site protects (`protect:`, and its
`not_identifiers`: session, signing and anti-bot values) and names an `allow:` entry keeps are
left alone, and so is personal data the shop itself receives (it needs your address to deliver).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from shopguard import paths
from shopguard.cli.common import load_or_report, user_dir
from shopguard.cli.exits import EXIT_FOUND, EXIT_OK, EXIT_USAGE, guarded
from shopguard.cli.report import (
    IDENTIFIERS,
    PERSONAL,
    Filters,
    Problems,
    ReportError,
    build,
    log_inputs,
    read_lines,
    strip_list,
    to_json,
)
from shopguard.engine.located import ConfigErrors
from shopguard.engine.location import innermost_name, parse
from shopguard.engine.settings import Config, Site, load_config
from shopguard.engine.sitefile import SiteFileError, add_entries, add_field_rule

MIN_SEEN = 2  # a value seen once may be chance; twice is a habit


@dataclass(frozen=True)
class Suggestion:
    site: str
    path: tuple[str, ...]  # the list it goes into, e.g. ("trackers", "strip_params")
    value: str  # a name, or for `fields` a host
    category: str  # the category of a field rule ("": a tracker list entry)
    evidence: str  # counts, masked example, hosts: the comment above it


def _protected(site: Site, kind: str, name: str) -> bool:
    """Whether stripping `name` might break the shop: the site protects it, calls it no
    identifier, or an allow entry keeps it."""
    lists = {"cookie": "cookies", "query": "params", "header": "headers"}.get(kind, "fields")
    for names in (site.protect, site.not_identifiers):
        if name.lower() in {n.lower() for n in getattr(names, lists)}:
            return True
    return any(rule.keep is not None and name in rule.keep for rule in site.policy.allow)


def suggestions(data: dict[str, object], config: Config) -> list[Suggestion]:
    found: dict[tuple[str, tuple[str, ...], str], Suggestion] = {}
    for row in data["unhandled"]:  # type: ignore[attr-defined]
        # the site whose policy handled the request: for an ad pixel the pixels' site, not the
        # shop whose page fired it (a rule in the shop's file would never apply to it)
        site = config.site(row["rule_site"])
        if site is None or row["count"] < MIN_SEEN:
            continue
        evidence = (
            f"seen {row['count']}x from {row['first'][:10]} to {row['last'][:10]}: "
            f"{row['category']} at {row['location']} to {row['host']} ({', '.join(row['how'])})"
        )
        if row["category"] in PERSONAL:
            if not row["third_party"]:
                continue  # the shop's own: it may need it (delivery, payment)
            path: tuple[str, ...] = ("fields", row["category"], "hosts")
            found.setdefault(
                (site.name, path, row["host"]),
                Suggestion(site.name, path, row["host"], row["category"], evidence),
            )
            continue
        if row["category"] not in IDENTIFIERS:
            continue
        strip = strip_list(row["location"])
        if strip is None:
            continue  # a path segment or host label: nothing to strip it by name
        kind = parse(row["location"]).kind
        name = innermost_name(row["location"])
        if not name or name.startswith("{") or _protected(site, kind, name):
            continue  # (a name that is itself personal data: no rule can be written for it)
        path = ("trackers", strip)
        if strip == "strip_cookies":
            path += (row["host"],)
        found.setdefault((site.name, path, name), Suggestion(site.name, path, name, "", evidence))
    return list(found.values())


def apply(text: str, items: list[Suggestion]) -> str:
    for item in items:
        if item.category:
            text = add_field_rule(text, item.category, [item.value], comment=item.evidence)
        else:
            text = add_entries(text, item.path, [item.value], comment=item.evidence)
    return text


def _site_file(config_dir: Path, site: str) -> Path:
    return config_dir / "sites" / f"{site}.yaml"


@guarded
def suggest_command(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return EXIT_USAGE
    try:
        files, _ = log_inputs(args.logs, config)
        problems = Problems()
        report = build(read_lines(files, problems), Filters(site=args.site))
    except ReportError as exc:
        print(f"shopguard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    report.problems, report.files = problems, [str(f) for f in files]
    items = suggestions(to_json(report), config)
    if not items:
        print(
            "nothing to suggest: no value left twice with no rule acting on it "
            f"({len(files)} files)"
        )
        return EXIT_OK
    config_dir = user_dir(args.config)
    by_site: dict[str, list[Suggestion]] = {}
    for item in items:
        by_site.setdefault(item.site, []).append(item)
    texts = {}
    for site, entries in by_site.items():
        target = _site_file(config_dir, site)
        base = target.read_text(encoding="utf-8") if target.exists() else "extends: default\n"
        try:
            text = apply(base, entries)
        except SiteFileError as exc:
            print(f"shopguard: {target}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if text != base:  # (what the file holds already is not suggested again)
            texts[site] = (target, text)
    if not texts:
        print("nothing to suggest: your site files hold these rules already")
        return EXIT_OK
    if not args.apply:
        out = sys.stdout if args.output is None else args.output.open("w", encoding="utf-8")
        try:
            for site, (target, text) in texts.items():
                print(
                    f"# {target} — {len(by_site[site])} suggestions (shopguard policy suggest)",
                    file=out,
                )
                print(text, file=out)
        finally:
            if out is not sys.stdout:
                out.close()
        return EXIT_FOUND if args.fail_if_any else EXIT_OK
    return _apply(config_dir, texts, by_site, args.fail_if_any)


def _apply(
    config_dir: Path,
    texts: dict[str, tuple[Path, str]],
    by_site: dict[str, list[Suggestion]],
    fail_if_any: bool,
) -> int:
    """Write the site files, then load the configuration as `policy check` does; if it has
    errors, every file is put back as it was."""
    before = {t: (t.read_bytes() if t.exists() else None) for t, _ in texts.values()}
    for target, text in texts.values():
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        part.write_text(text, encoding="utf-8")
        os.replace(part, target)
    try:
        load_config(paths.shipped_config_dir(), config_dir)
    except ConfigErrors as exc:
        for target, old in before.items():
            if old is None:
                target.unlink()
            else:
                target.write_bytes(old)
        print(
            f"shopguard: the suggestions did not pass the check, nothing was changed:\n{exc}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    for site, (target, _) in texts.items():
        print(f"{target}: {len(by_site[site])} rules added (shopguard policy check passes)")
    return EXIT_FOUND if fail_if_any else EXIT_OK
