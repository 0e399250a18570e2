"""The configuration model and its strict loader: `shopguard.yaml` plus `sites/*.yaml`.

Shipped defaults come first; a user's config directory overrides them: its `shopguard.yaml` key by
key (the `log` section per entry), its site files file by file (same file name replaces the shipped
one; `enabled: false` turns a site off).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from shopguard.engine.hosts import GlobError, HostGlob, HostIndex, SiteHosts, parse_glob
from shopguard.engine.located import (
    Checker,
    ConfigError,
    ConfigErrors,
    Located,
    load_located,
    parse_size,
)
from shopguard.engine.location import LocationError
from shopguard.engine.location import parse as parse_location
from shopguard.engine.patterns import TEXT_IP
from shopguard.engine.policy import Policy, read_policy
from shopguard.engine.trackers import Identifiers, TrackerNames

MODES = ("observe", "enforce")
LOG_VALUES = ("masked", "raw")
GLOBAL_KEYS = ("mode", "log", "profile", "body_cap")
LOG_KEYS = ("path", "rotate_bytes", "keep", "max_age_days", "values")
SITE_KEYS = (
    "site",
    "extends",
    "enabled",
    "hosts",
    "first_party",
    "mode",
    "referred_only",
    "tracking_ids",
    "device_ids",
    "not_identifiers",
    "protect",
    "packed_ips",
    "trackers",
    "fields",
    "allow",
    "on_uninspected",
    "examples",
)
TRACKING_KEYS = ("cookies", "params", "headers", "fields")
_SITE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class LogSettings:
    path: Path | None = None  # None: the platform state directory's flows.jsonl
    rotate_bytes: int = 10 * 1024 * 1024
    keep: int = 5
    max_age_days: int = 30
    values: str = "masked"


@dataclass(frozen=True)
class Settings:
    mode: str = "observe"
    log: LogSettings = field(default_factory=LogSettings)
    profile: Path | None = None
    body_cap: int = 2 * 1024 * 1024


@dataclass(frozen=True)
class Site:
    name: str
    enabled: bool
    hosts: tuple[HostGlob, ...]
    first_party: tuple[HostGlob, ...]
    mode: str | None
    file: str
    line: int  # where the site's hosts are declared, for messages
    tracking_ids: TrackerNames = field(default_factory=TrackerNames)
    policy: Policy = field(default_factory=Policy)
    referred_only: bool = False  # handled only when Origin/Referer is another site's (pixels)
    device_ids: TrackerNames = field(default_factory=TrackerNames)
    not_identifiers: TrackerNames = field(default_factory=TrackerNames)
    packed_ips: tuple[tuple[str, int], ...] = ()  # (name, byte offset of an IPv4 address)
    protect: TrackerNames = field(default_factory=TrackerNames)  # never suggested for stripping

    @cached_property
    def identifiers(self) -> Identifiers:
        """The site's identifier names, over those common to every site (`data/identifiers.yaml`:
        analytics and advertising cookies and parameters)."""
        own = Identifiers(self.tracking_ids, self.device_ids, self.not_identifiers, self.packed_ips)
        return common_identifiers().merged(own)

    @property
    def scope(self) -> SiteHosts:
        return SiteHosts(self.name, self.hosts, self.first_party, self.referred_only)

    def extended_by(self, other: Site) -> Site:
        """This (shipped) site with a user's `extends: default` file laid over it."""
        return Site(
            name=self.name,
            enabled=other.enabled,
            hosts=self.hosts + tuple(g for g in other.hosts if g not in self.hosts),
            first_party=self.first_party
            + tuple(g for g in other.first_party if g not in self.first_party),
            mode=other.mode or self.mode,
            file=other.file,
            line=self.line,
            tracking_ids=self.tracking_ids.merged(other.tracking_ids),
            policy=self.policy.merged(other.policy),
            referred_only=self.referred_only or other.referred_only,
            device_ids=self.device_ids.merged(other.device_ids),
            not_identifiers=self.not_identifiers.merged(other.not_identifiers),
            packed_ips=self.packed_ips
            + tuple(p for p in other.packed_ips if p not in self.packed_ips),
            protect=self.protect.merged(other.protect),
        )


@dataclass(frozen=True)
class Config:
    settings: Settings
    sites: tuple[Site, ...]  # every loaded site, enabled or not, in file-name order
    files: tuple[str, ...]  # the files the configuration was read from

    @property
    def enabled_sites(self) -> tuple[Site, ...]:
        return tuple(s for s in self.sites if s.enabled)

    def site(self, name: str) -> Site | None:
        return self._by_name.get(name)

    @cached_property
    def _by_name(self) -> dict[str, Site]:
        found: dict[str, Site] = {}
        for site in self.sites:
            found.setdefault(site.name, site)
        return found

    def host_index(self) -> HostIndex:
        return self._host_index

    @cached_property
    def _host_index(self) -> HostIndex:
        return HostIndex([s.scope for s in self.enabled_sites])

    def mode_for(self, site: str | None, override: str | None = None) -> str:
        """A site's mode: the command line's (`override`) > the site file's > the global one."""
        if override:
            return override
        found = self.site(site) if site else None
        if found is not None and found.mode:
            return found.mode
        return self.settings.mode


def _display(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _read_globals(doc: Located, check: Checker, base: Path) -> dict[str, Any]:
    """The keys present in one `shopguard.yaml`, validated."""
    out: dict[str, Any] = {}
    entries = check.mapping(doc, GLOBAL_KEYS)
    if entries is None:
        return out
    if "mode" in entries:
        out["mode"] = check.choice(entries["mode"], MODES)
    if "profile" in entries:
        value = check.scalar(entries["profile"], str, allow_none=True)
        out["profile"] = _path(value, base) if value else None
    if "body_cap" in entries:
        out["body_cap"] = _size(entries["body_cap"], check)
    if "log" in entries:
        log = check.mapping(entries["log"], LOG_KEYS) if entries["log"].value is not None else {}
        out["log"] = {}
        for name, at in (log or {}).items():
            if name == "path":
                value = check.scalar(at, str, allow_none=True)
                out["log"]["path"] = _path(value, base) if value else None
            elif name == "rotate_bytes":
                out["log"]["rotate_bytes"] = _size(at, check, minimum=1024)
            elif name == "keep":
                out["log"]["keep"] = check.integer(at, 0)
            elif name == "max_age_days":
                out["log"]["max_age_days"] = check.integer(at, 0)
            elif name == "values":
                out["log"]["values"] = check.choice(at, LOG_VALUES)
    return out


def _path(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _size(at: Located, check: Checker, minimum: int = 1) -> int | None:
    size = parse_size(at.value)
    if size is None or size < minimum:
        check.error(
            at, f"expected a size in bytes >= {minimum} (e.g. 2097152 or 2MiB), got {at.value!r}"
        )
        return None
    return size


def _read_globs(at: Located, check: Checker) -> tuple[HostGlob, ...]:
    globs = []
    for item in check.items(at):
        if not isinstance(item.value, str):
            check.error(item, f"expected a host glob as text, got {item.value!r}")
            continue
        try:
            globs.append(parse_glob(item.value))
        except GlobError as exc:
            check.error(item, str(exc))
    return tuple(globs)


def _read_site(doc: Located, check: Checker, stem: str, extends: bool = False) -> Site | None:
    """One site file; with `extends`, a user's file laid over a shipped one (hosts optional)."""
    entries = check.mapping(doc, SITE_KEYS)
    if entries is None:
        return None
    name = stem
    if "site" in entries:
        value = check.scalar(entries["site"], str)
        if value is not None and not _SITE_NAME.match(value):
            check.error(entries["site"], f"expected a lower-case name like 'taobao', got {value!r}")
        elif value is not None:
            name = value
    enabled = True
    if "enabled" in entries:
        enabled = bool(check.scalar(entries["enabled"], bool))
    mode = check.choice(entries["mode"], MODES) if "mode" in entries else None
    hosts: tuple[HostGlob, ...] = ()
    if "hosts" in entries:
        hosts = _read_globs(entries["hosts"], check)
        listed = entries["hosts"].value
        if not hosts and listed == [] and enabled and not extends:  # (bad entries: said above)
            check.error(entries["hosts"], "expected at least one host glob")
    elif enabled and not extends:
        check.error(doc, "missing required key 'hosts' (or set 'enabled: false')")
    first_party = _read_globs(entries["first_party"], check) if "first_party" in entries else ()
    line = entries["hosts"].key_line if "hosts" in entries else doc.line
    names = {
        key: _read_trackers(entries[key], check) if key in entries else None
        for key in ("tracking_ids", "device_ids", "not_identifiers", "protect")
    }
    referred_only = False
    if "referred_only" in entries:
        referred_only = bool(check.scalar(entries["referred_only"], bool))
    return Site(
        name,
        enabled,
        hosts,
        first_party,
        mode,
        check.file,
        line,
        names["tracking_ids"] or TrackerNames(),
        read_policy(entries, check),
        referred_only,
        names["device_ids"] or TrackerNames(),
        names["not_identifiers"] or TrackerNames(),
        _read_packed(entries["packed_ips"], check) if "packed_ips" in entries else (),
        names["protect"] or TrackerNames(),
    )


@lru_cache(maxsize=1)
def common_identifiers() -> Identifiers:
    """The identifier names common to every site, shipped in `data/identifiers.yaml`."""
    path = Path(str(files("shopguard") / "data" / "identifiers.yaml"))
    doc, problems = load_located(path, "shopguard/data/identifiers.yaml")
    assert doc is not None and not problems, problems
    check = Checker("shopguard/data/identifiers.yaml")
    entries = check.mapping(doc, ("tracking_ids", "device_ids", "not_identifiers")) or {}
    names = {key: _read_trackers(value, check) or TrackerNames() for key, value in entries.items()}
    assert not check.errors, check.errors
    return Identifiers(
        names.get("tracking_ids", TrackerNames()),
        names.get("device_ids", TrackerNames()),
        names.get("not_identifiers", TrackerNames()),
    )


def _read_packed(at: Located, check: Checker) -> tuple[tuple[str, int], ...]:
    """`packed_ips`: names whose base64 value holds an IPv4 address as four bytes, each with
    the offset of the first byte; or `text`: the value begins with the address written out
    (`<address>.<time>.<n>`), kept as offset -1."""
    if not isinstance(at.value, dict):
        check.error(at, "expected a mapping of names to byte offsets or `text`, like {cna: 10}")
        return ()
    found = []
    for name, offset in at.value.items():
        if offset.value == "text":
            found.append((str(name), TEXT_IP))
            continue
        value = check.scalar(offset, int)
        if value is not None and not 0 <= value <= 64:
            check.error(offset, f"expected a byte offset from 0 to 64, got {value}")
        elif value is not None:
            found.append((str(name), int(value)))
    return tuple(found)


def _read_trackers(at: Located, check: Checker) -> TrackerNames | None:
    entries = check.mapping(at, TRACKING_KEYS)
    if entries is None:
        return None
    names: dict[str, frozenset[str]] = {}
    for kind, value in entries.items():
        items = []
        for item in check.items(value):
            if not (isinstance(item.value, str) and item.value.strip()):
                check.error(item, f"expected a {kind[:-1]} name, got {item.value!r}")
                continue
            name = item.value.strip()
            if kind == "fields" and ":" in name:  # a location: `body:$.deviceInfo.id`
                try:
                    parse_location(name)
                except LocationError as exc:
                    check.error(item, f"expected a field name or a location: {exc}")
                    continue
            items.append(name.lower() if kind == "headers" else name)
        names[kind] = frozenset(items)
    return TrackerNames(**names)


def _merge_globals(layers: list[dict[str, Any]]) -> Settings:
    merged: dict[str, Any] = {}
    log: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key == "log":
                log.update({k: v for k, v in value.items()})
            else:
                merged[key] = value
    return Settings(**merged, log=LogSettings(**log))


def _extends(doc: Located, check: Checker) -> bool:
    """Whether a site file says `extends: default` (the only value there is)."""
    at = doc.value.get("extends") if isinstance(doc.value, dict) else None
    if at is None:
        return False
    return check.choice(at, ("default",)) == "default"


def _shipped_site(
    shipped_files: dict[str, Path],
    stem: str,
    path: Path,
    doc: Located,
    display: str,
    errors: list[ConfigError],
) -> Site | None:
    """The shipped site a user's `extends: default` file extends (errors when there is none)."""
    base_path = shipped_files.get(stem)
    at = doc.value["extends"]
    if base_path is None or base_path == path:
        errors.append(
            ConfigError(
                display,
                at.line,
                "extends",
                f"'extends: default' needs a shipped site file named {stem}.yaml "
                f"(shipped: {', '.join(sorted(shipped_files)) or 'none'})",
            )
        )
        return None
    base_display = _display(base_path)
    base_doc, problems = load_located(base_path, base_display)
    errors.extend(problems)
    if base_doc is None:
        return None
    check = Checker(base_display)
    base = _read_site(base_doc, check, stem)
    errors.extend(check.errors)
    return base


def config_stamp(shipped: Path, user: Path | None) -> tuple[tuple[str, int, int], ...]:
    """What the configuration's files look like on disk (names, times, sizes): a change here
    means the configuration should be read again."""
    found = []
    for directory in (shipped, user):
        if directory is None:
            continue
        candidates = [directory / "shopguard.yaml"]
        sites = directory / "sites"
        if sites.is_dir():
            candidates += sorted(sites.glob("*.yaml")) + sorted(sites.glob("*.yml"))
        for path in candidates:
            try:
                info = path.stat()
            except OSError:
                continue
            found.append((str(path), info.st_mtime_ns, info.st_size))
    return tuple(found)


def load_config(shipped: Path, user: Path | None) -> Config:
    """Load and validate the shipped defaults overlaid with a user config directory.

    Raises ConfigErrors listing every problem, each with file, line and key.
    """
    errors: list[ConfigError] = []
    files: list[str] = []
    global_layers: list[dict[str, Any]] = []
    site_files: dict[str, Path] = {}
    shipped_files: dict[str, Path] = {}
    for directory in (shipped, user):
        if directory is None:
            continue
        main = directory / "shopguard.yaml"
        if main.is_file():
            doc, problems = load_located(main, _display(main))
            errors.extend(problems)
            files.append(_display(main))
            if doc is not None:
                check = Checker(_display(main))
                global_layers.append(_read_globals(doc, check, main.parent))
                errors.extend(check.errors)
        sites_dir = directory / "sites"
        if sites_dir.is_dir():
            for path in sorted(sites_dir.glob("*.yaml")) + sorted(sites_dir.glob("*.yml")):
                site_files[path.stem] = path
                if directory == shipped:
                    shipped_files[path.stem] = path
    sites: list[Site] = []
    for stem in sorted(site_files):
        path = site_files[stem]
        display = _display(path)
        files.append(display)
        doc, problems = load_located(path, display)
        errors.extend(problems)
        if doc is None:
            continue
        check = Checker(display)
        extends = _extends(doc, check)
        site = _read_site(doc, check, stem, extends)
        errors.extend(check.errors)
        if site is None:
            continue
        if extends:
            base = _shipped_site(shipped_files, stem, path, doc, display, errors)
            if base is None:
                continue
            site = base.extended_by(site)
        twin = next((s for s in sites if s.name == site.name), None)
        if twin is not None:
            named = doc.value.get("site") if isinstance(doc.value, dict) else None
            errors.append(
                ConfigError(
                    display,
                    named.key_line if named is not None else doc.line,
                    "site",
                    f"site {site.name!r} is also defined in {twin.file}",
                )
            )
            continue
        sites.append(site)
    if errors:
        raise ConfigErrors(errors)
    settings = _merge_globals(global_layers)
    return Config(settings=settings, sites=tuple(sites), files=tuple(files))
