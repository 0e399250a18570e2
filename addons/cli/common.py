"""Helpers shared by the CLI commands."""

from __future__ import annotations

import sys
from pathlib import Path

from shopguard import paths
from shopguard.engine.detect import Detector
from shopguard.engine.known_values import KnownMatcher, load_profile
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


def build_detector(
    config: Config, profile: Path | None, min_confidence: float, secret: bytes | None = None
) -> Detector | None:
    """The detector with the user's profile (`--profile`, else the setting, else the default
    file if it exists); None after printing the profile's errors."""
    profile_path = profile or config.settings.profile or paths.default_profile_path()
    matcher = None
    region = "CN"
    if profile or profile_path.exists():
        try:
            loaded = load_profile(profile_path)
        except ConfigErrors as exc:
            for error in exc.errors:
                print(error, file=sys.stderr)
            return None
        matcher, region = KnownMatcher(loaded), loaded.default_region
    return Detector(
        secret=secret if secret is not None else paths.install_secret(),
        matcher=matcher,
        region=region,
        min_confidence=min_confidence,
        keep_values=config.settings.log.values == "raw",
    )
