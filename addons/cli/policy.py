"""`shopguard policy check`: validate the configuration and summarise each site."""

from __future__ import annotations

import argparse
import sys

from shopguard.cli.common import load_or_report
from shopguard.cli.main import EXIT_OK, EXIT_USAGE
from shopguard.engine.hosts import overlaps


def check(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return EXIT_USAGE
    for site in config.sites:
        state = site.mode or config.settings.mode if site.enabled else "disabled"
        print(
            f"{site.name:<12} {state:<8} {len(site.hosts):>3} host globs, "
            f"{len(site.first_party):>2} first-party  {site.file}"
        )
    enabled = config.enabled_sites
    shared: dict[str, list[str]] = {}
    for a, first, b, second in overlaps([s.scope for s in enabled]):
        names = shared.setdefault(a.text if a.covers(b) else b.text, [])
        names.extend(n for n in (first.name, second.name) if n not in names)
    for glob, names in shared.items():
        print(
            f"warning: {glob} is listed by {', '.join(names)}: its requests go to the site of "
            f"their Origin/Referer, else to {names[0]}",
            file=sys.stderr,
        )
    print(f"ok: {len(enabled)} sites enabled, {len(config.files)} files checked")
    return EXIT_OK
