"""Helpers shared by the CLI commands."""

from __future__ import annotations

import sys
from pathlib import Path

from shopguard import paths
from shopguard.engine.located import ConfigErrors
from shopguard.engine.settings import Config, load_config


def user_dir(given: Path | None) -> Path:
    return given if given is not None else paths.user_config_dir()


def load_or_report(given: Path | None) -> Config | None:
    """The configuration, or None after printing every error (file:line: key: message)."""
    if given is not None and not given.is_dir():
        print(f"shopguard: config directory not found: {given}", file=sys.stderr)
        return None
    try:
        return load_config(paths.shipped_config_dir(), user_dir(given))
    except ConfigErrors as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        count = len(exc.errors)
        print(f"shopguard: {count} configuration error{'s' * (count != 1)}", file=sys.stderr)
        return None
