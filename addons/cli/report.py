"""`shopguard report`: what each site learnt about you, from shopguard's own flow logs.

The logs are read as a stream (the live file, its rotations, gzip-compressed or not) into
aggregates whose size grows with the sites, hosts and values seen, not with the lines: a year
of browsing reports in the memory of an afternoon's.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from shopguard.cli.exits import EXIT_OK, EXIT_USAGE, guarded
from shopguard.engine.location import DOCUMENT, LocationError, innermost_name, parse
from shopguard.lines import acted_on

if TYPE_CHECKING:
    from shopguard.engine.settings import Config

SCHEMAS = (1,)  # the log schemas this report reads (every one the project has written)
PERSONAL = ("phone", "email", "name", "address", "postcode", "id_number", "payment_card", "geo")
IDENTIFIERS = ("device_id", "tracking_id", "ip_address")
_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_STRIPPABLE = {"query": "strip_params", "header": "strip_headers", "cookie": "strip_cookies"}
_FIELD_KINDS = ("body", "body.form", "ws")


class ReportError(Exception):
    """Input or options the report cannot use: the message names the file (and line)."""


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """`2h`, `30m`, `7d` ago; or an ISO date or date and time, local unless it ends in `Z`."""
    now = now or datetime.now(UTC)
    relative = _RELATIVE.match(text.strip().lower())
    if relative:
        return now - timedelta(seconds=int(relative.group(1)) * _UNITS[relative.group(2)])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ReportError(
            f"not a time: {text!r} (expected e.g. 2h, 7d, 2026-11-26 or 2026-11-26T14:00)"
        ) from exc
    return when.astimezone(UTC)  # (a naive time is taken as local)


# -- reading -----------------------------------------------------------------------------------


def log_files(path: Path) -> list[Path]:
    """A log with its rotations, oldest first: `name.<UTC time>.gz`, `name.<UTC time>` (moved
    aside, not compressed yet), then the live file."""
    rotated = re.compile(re.escape(path.name) + r"\.\d{8}T\d{12}Z(?:\.gz)?")
    older = [p for p in path.parent.glob(path.name + ".*") if rotated.fullmatch(p.name)]
    stamp = len(path.name) + 1
    files = sorted(older, key=lambda p: p.name[stamp : stamp + 21])
    return [*files, path] if path.exists() else files


def _open(path: Path) -> IO[str]:
    try:
        with path.open("rb") as probe:
            magic = probe.read(2)
        if magic == b"\x1f\x8b":
            return gzip.open(path, "rt", encoding="utf-8", errors="replace")
        return path.open(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror or exc}") from exc


@dataclass
class Problems:
    """Bad input, counted and reported, never fatal."""

    garbage: int = 0  # lines that are no JSON object
    truncated: int = 0  # a last line cut short (a proxy killed while writing)
    other_schema: int = 0  # lines of a schema this version does not read
    where: list[str] = field(default_factory=list)  # the first few, as file:line

    def add(self, kind: str, file: Path, number: int) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.where) < 5:
            self.where.append(f"{file}:{number}")

    @property
    def total(self) -> int:
        return self.garbage + self.truncated + self.other_schema


def read_lines(
    files: Iterable[Path], problems: Problems, progress: Callable[[Path], None] | None = None
) -> Iterator[dict[str, Any]]:
    for path in files:
        if progress is not None:
            progress(path)
        with _open(path) as stream:
            previous: tuple[int, str] | None = None
            for number, text in enumerate(stream, 1):
                if previous is not None:
                    yield from _parsed(path, *previous, problems, last=False)
                previous = (number, text)
            if previous is not None:
                yield from _parsed(path, *previous, problems, last=True)


def _parsed(
    path: Path, number: int, text: str, problems: Problems, *, last: bool
) -> Iterator[dict[str, Any]]:
    if not text.strip():
        return
    try:
        line = json.loads(text)
    except (ValueError, RecursionError):
        problems.add("truncated" if last and not text.endswith("\n") else "garbage", path, number)
        return
    if not isinstance(line, dict) or not isinstance(line.get("event"), str):
        problems.add("garbage", path, number)
    elif line.get("schema") not in SCHEMAS:
        problems.add("other_schema", path, number)
    else:
        yield line


# -- aggregating -------------------------------------------------------------------------------


@dataclass
class Seen:
    """How often something was seen, when first and last, and how it was written."""

    count: int = 0
    stopped: int = 0  # of them, how many did not leave (blocked, stripped, replaced)
    first: str = ""
    last: str = ""
    ways: set[str] = field(default_factory=set)  # "in clear", or the transform

    def add(self, when: str, left: bool, way: str) -> None:
        self.count += 1
        if not left:
            self.stopped += 1
        if not self.first or when < self.first:
            self.first = when
        if when > self.last:
            self.last = when
        self.ways.add(way)

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "sent": self.count - self.stopped,
            "stopped": self.stopped,
            "first": self.first,
            "last": self.last,
            "how": sorted(self.ways),
        }


@dataclass
class OwnValue:
    """One of the user's own values (a profile finding), followed by its fingerprint."""

    category: str
    preview: str
    hosts: dict[str, Seen] = field(default_factory=dict)


@dataclass
class SiteReport:
    requests: int = 0
    with_data: int = 0
    blocked: int = 0
    sent: dict[tuple[str, str, bool], Seen] = field(default_factory=dict)  # category, host, 3rd
    own: dict[str, OwnValue] = field(default_factory=dict)  # fingerprint -> value
    linked: dict[tuple[str, str, str], int] = field(default_factory=dict)  # from, host, category
    actions: dict[tuple[str, str, str, bool], int] = field(default_factory=dict)
    # category, host, 3rd, location, and the site whose policy handled the request (for an ad
    # pixel the pixels' site, not the shop whose page fired it): its file is where a rule goes
    unhandled: dict[tuple[str, str, bool, str, str], Seen] = field(default_factory=dict)


@dataclass
class Report:
    sites: dict[str, SiteReport] = field(default_factory=dict)
    hours: dict[str, int] = field(default_factory=dict)  # UTC hour -> requests with data
    problems: Problems = field(default_factory=Problems)
    files: list[str] = field(default_factory=list)
    sessions: int = 0
    first: str = ""
    last: str = ""

    def site(self, name: str) -> SiteReport:
        return self.sites.setdefault(name, SiteReport())


def _seen(table: dict[Any, Seen], key: Any) -> Seen:
    """The entry of `key`, made on first use (`setdefault` would make one on every call)."""
    seen = table.get(key)
    if seen is None:
        seen = table[key] = Seen()
    return seen


@functools.lru_cache(maxsize=65536)
def _acted_on(location: str, targets: tuple[tuple[str, str], ...]) -> bool:
    """`acted_on` for a line's (action, target) pairs: locations and targets recur from line to
    line, and parsing them is most of its cost."""
    return acted_on(location, [{"action": a, "target": t} for a, t in targets])


def add_flow(report: Report, line: dict[str, Any]) -> None:
    # an ad pixel is reported with the shop whose page fired it (`via`): what that shop's
    # visit gave away
    site = report.site(str(line.get("via") or line.get("site")))
    policy_site = str(line.get("site"))
    site.requests += 1
    when = str(line.get("timestamp", ""))
    host = str(line.get("host", ""))
    third = bool(line.get("third_party"))
    actions = [a for a in line.get("actions") or [] if isinstance(a, dict)]
    findings = [f for f in line.get("findings") or [] if isinstance(f, dict)]
    if any(a.get("action") == "block" and a.get("applied") for a in actions):
        site.blocked += 1
    for action in actions:
        key = (
            str(action.get("action")),
            str(action.get("target", "request")),
            str(action.get("rule", "")),
            bool(action.get("applied", True)),
        )
        site.actions[key] = site.actions.get(key, 0) + 1
    targets = tuple((str(a.get("action")), str(a.get("target", ""))) for a in actions)
    sent = [f for f in findings if not f.get("received")]
    site.with_data += bool(sent)
    if sent:
        hour = when[:13]
        report.hours[hour] = report.hours.get(hour, 0) + 1
    for finding in sent:
        category, location = str(finding.get("category")), str(finding.get("location"))
        left = finding.get("left", True) is not False  # (lines written before `left`: as sent)
        way = finding.get("transform") or "in clear"
        _seen(site.sent, (category, host, third)).add(when, left, way)
        if finding.get("detector") == "profile":
            fingerprint = str(finding.get("fingerprint"))
            own = site.own.get(fingerprint)
            if own is None:
                own = site.own[fingerprint] = OwnValue(category, str(finding.get("preview", "")))
            _seen(own.hosts, host).add(when, left, way)
        if finding.get("linked_from"):
            link = (str(finding["linked_from"]), host, category)
            site.linked[link] = site.linked.get(link, 0) + 1
        if left and not (targets and _acted_on(location, targets)):
            _seen(site.unhandled, (category, host, third, location, policy_site)).add(
                when, left, way
            )


@dataclass
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    site: str | None = None
    last_session: bool = False

    def keeps(self, line: dict[str, Any]) -> bool:
        if self.since is None and self.until is None:
            return True
        try:
            when = datetime.fromisoformat(str(line.get("timestamp")))
        except ValueError:
            return False
        return (self.since is None or when >= self.since) and (
            self.until is None or when <= self.until
        )


def build(lines: Iterable[dict[str, Any]], filters: Filters) -> Report:
    report = Report()
    for line in lines:
        event = line["event"]
        if event == "proxy_started":
            report.sessions += 1
            if filters.last_session:  # a new session: what came before is not the last one
                report.sites.clear()
                report.hours.clear()
                report.first = report.last = ""
        if event != "flow" or not filters.keeps(line):
            continue
        if filters.site is not None and filters.site not in (line.get("site"), line.get("via")):
            continue
        when = str(line.get("timestamp", ""))
        report.first = min(report.first, when) if report.first else when
        report.last = max(report.last, when)
        add_flow(report, line)
    return report


# -- what to do about it -----------------------------------------------------------------------


def rank(category: str, third_party: bool) -> int:
    """Personal data to a third party first, then identifiers to one, then what the shop itself
    receives."""
    personal = category in PERSONAL
    return (0 if personal else 1) if third_party else (2 if personal else 3)


def strip_list(location: str) -> str | None:
    """The `trackers:` list that strips what is at `location` by its name: `strip_params`,
    `strip_headers` and `strip_cookies` for a whole parameter, header or cookie, `strip_fields`
    for a body field or a name inside what one of those holds (JSON in a parameter); None when
    no name reaches it (a path segment, a host label, an unreadable location)."""
    try:
        parsed = parse(location)
    except LocationError:
        return None
    if any(step.kind == DOCUMENT for step in parsed.steps):
        return "strip_fields"
    if parsed.kind in _STRIPPABLE:
        return _STRIPPABLE[parsed.kind]
    return "strip_fields" if parsed.kind in _FIELD_KINDS else None


def suggestion(category: str, location: str, host: str) -> str:
    """The site-file rule that would handle a value sent at `location` to `host`."""
    if category in PERSONAL:
        return f"fields: {{{category}: {{action: strip, hosts: [{json.dumps(host)}]}}}}"
    name = json.dumps(innermost_name(location))
    strip = strip_list(location)
    if strip == "strip_cookies":
        return f"trackers: {{strip_cookies: {{{json.dumps(host)}: [{name}]}}}}"
    if strip is not None:
        return f"trackers: {{{strip}: [{name}]}}"
    return f"trackers: {{block: [{json.dumps(host)}]}}"


def unhandled(report: Report) -> list[dict[str, Any]]:
    rows = [
        {
            "site": name,
            "category": category,
            "host": host,
            "third_party": third,
            "location": location,
            **seen.to_dict(),
            "rule_to_add": suggestion(category, location, host),
            "rule_site": policy_site,
        }
        for name, site in report.sites.items()
        for (category, host, third, location, policy_site), seen in site.unhandled.items()
    ]
    return sorted(rows, key=lambda r: (rank(r["category"], r["third_party"]), -r["count"]))


def rule_text(row: dict[str, Any]) -> str:
    """An unhandled row's rule as a reader needs it: with the file it goes into when that is
    not the file of the site the row is listed under (an ad pixel's rule, under the shop)."""
    if row["rule_site"] == row["site"]:
        return str(row["rule_to_add"])
    return f"{row['rule_site']}.yaml: {row['rule_to_add']}"


def to_json(report: Report) -> dict[str, Any]:
    """The report as data (its schema is in the README, *Reviewing what was sent*)."""
    sites = {}
    for name, site in sorted(report.sites.items()):
        sites[name] = {
            "requests": site.requests,
            "requests_with_personal_data": site.with_data,
            "blocked": site.blocked,
            "sent": [
                {"category": c, "host": h, "third_party": t, **seen.to_dict()}
                for (c, h, t), seen in sorted(site.sent.items(), key=lambda i: -i[1].count)
            ],
            "your_values": [
                {
                    "category": own.category,
                    "preview": own.preview,
                    "fingerprint": fingerprint,
                    "hosts": [
                        {"host": h, **seen.to_dict()}
                        for h, seen in sorted(own.hosts.items(), key=lambda i: -i[1].count)
                    ],
                }
                for fingerprint, own in site.own.items()
            ],
            "linked": [
                {"from": origin, "to": host, "category": category, "count": count}
                for (origin, host, category), count in sorted(site.linked.items())
            ],
            "actions": [
                {"action": a, "target": t, "rule": r, "applied": ap, "count": count}
                for (a, t, r, ap), count in sorted(site.actions.items())
            ],
        }
    problems = report.problems
    return {
        "report": 1,
        "files": report.files,
        "sessions": report.sessions,
        "first": report.first,
        "last": report.last,
        "unhandled": unhandled(report),
        "timeline": [{"hour": h, "requests": n} for h, n in sorted(report.hours.items())],
        "sites": sites,
        "bad_input": {
            "garbage": problems.garbage,
            "truncated": problems.truncated,
            "other_schema": problems.other_schema,
            "where": problems.where,
        },
    }


# -- writing -----------------------------------------------------------------------------------


def _hosts_text(own: dict[str, Any]) -> str:
    parts = []
    for entry in own["hosts"]:
        hashed = [w for w in entry["how"] if w != "in clear"]
        how = f" ({', '.join(hashed)})" if hashed else ""
        stopped = f", {entry['stopped']} stopped" if entry["stopped"] else ""
        parts.append(f"{entry['host']} {entry['count']}×{how}{stopped}")
    return "; ".join(parts)


def _sections(data: dict[str, Any]) -> Iterator[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of each table, in the order a reader needs them."""
    rows = [
        [
            r["site"],
            r["category"],
            r["host"],
            "third party" if r["third_party"] else "the shop",
            r["location"],
            str(r["count"]),
            rule_text(r),
        ]
        for r in data["unhandled"]
    ]
    yield (
        "Sent with no rule acting on it (most serious first)",
        ["site", "what", "to host", "who", "where", "times", "rule that would stop it"],
        rows,
    )
    for name, site in data["sites"].items():
        head = (
            f"{name}: {site['requests']} requests, {site['requests_with_personal_data']} with "
            f"personal data, {site['blocked']} blocked"
        )
        yield (
            f"{head} — your own values",
            ["what", "value", "sent to"],
            [[v["category"], v["preview"], _hosts_text(v)] for v in site["your_values"]],
        )
        yield (
            f"{name} — what was sent, by category and host",
            ["what", "to host", "who", "sent", "stopped", "how", "first", "last"],
            [
                [
                    s["category"],
                    s["host"],
                    "third party" if s["third_party"] else "the shop",
                    str(s["sent"]),
                    str(s["stopped"]),
                    ", ".join(s["how"]),
                    s["first"][:19].replace("T", " "),
                    s["last"][:19].replace("T", " "),
                ]
                for s in site["sent"]
            ],
        )
        if site["linked"]:
            yield (
                f"{name} — identifiers that travelled to another host",
                ["identifier", "first seen", "then sent to", "times"],
                [[x["category"], x["from"], x["to"], str(x["count"])] for x in site["linked"]],
            )
        yield (
            f"{name} — what the policy did",
            ["action", "on", "rule", "applied", "times"],
            [
                [
                    a["action"],
                    a["target"],
                    a["rule"],
                    "yes" if a["applied"] else "no (observe)",
                    str(a["count"]),
                ]
                for a in site["actions"]
            ],
        )


def counted(number: int, thing: str) -> str:
    """`1 site`, `2 sites`."""
    return f"{number} {thing}{'s' * (number != 1)}"


def _summary(data: dict[str, Any]) -> list[str]:
    bad = data["bad_input"]
    requests = sum(s["requests"] for s in data["sites"].values())
    lines = [
        f"{counted(requests, 'request')} to {counted(len(data['sites']), 'site')} "
        f"from {data['first'][:19] or '-'} to {data['last'][:19] or '-'} "
        f"({counted(data['sessions'], 'proxy session')}, {counted(len(data['files']), 'file')})"
    ]
    skipped = bad["garbage"] + bad["truncated"] + bad["other_schema"]
    if skipped:
        lines.append(
            f"skipped {skipped} lines: {bad['garbage']} unreadable, {bad['truncated']} cut short, "
            f"{bad['other_schema']} of another schema (first: {', '.join(bad['where'])})"
        )
    return lines


def write_markdown(data: dict[str, Any], out: IO[str]) -> None:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    print("# What the shops learnt — shopguard report\n", file=out)
    for line in _summary(data):
        print(f"{line}  ", file=out)
    for title, header, rows in _sections(data):
        print(f"\n## {cell(title)}\n", file=out)
        if not rows:
            print("nothing\n", file=out)
            continue
        print("| " + " | ".join(header) + " |", file=out)
        print("|" + "---|" * len(header), file=out)
        for row in rows:
            print("| " + " | ".join(cell(c) for c in row) + " |", file=out)


def write_table(data: dict[str, Any], out: IO[str]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=out, highlight=False, width=None if out.isatty() else 160)
    for line in _summary(data):
        console.print(Text(line))
    for title, header, rows in _sections(data):
        table = Table(title=Text(title), title_justify="left", expand=False)
        for name in header:
            table.add_column(Text(name), overflow="fold")
        for row in rows:
            table.add_row(*(Text(c) for c in row))
        if not rows:
            console.print(Text(f"\n{title}: nothing"))
        else:
            console.print(table)


# -- the command -------------------------------------------------------------------------------


def log_inputs(logs: list[Path], config: Config | None) -> tuple[list[Path], Path]:
    """The files to read, and the live log they belong to: the given files (each must exist),
    else the configured log with its rotations (`config` is needed only then)."""
    if logs:
        missing = [p for p in logs if not p.exists()]
        if missing:
            raise ReportError(f"{missing[0]}: no such file")
        return list(logs), logs[-1]
    from shopguard import paths

    assert config is not None
    path = config.settings.log.path or paths.default_log_path()
    return log_files(path), path


def _inputs(args: argparse.Namespace) -> list[Path]:
    config = None
    if not args.logs:  # (the configuration, and the engine it needs, only to find the log)
        from shopguard.cli.common import load_or_report

        config = load_or_report(args.config)
        if config is None:
            raise ReportError("the configuration has errors (above)")
    files, path = log_inputs(args.logs, config)
    if not files:
        raise ReportError(f"{path}: no log yet (run `shopguard run` and browse first)")
    return files


class Progress:
    """On a terminal (stderr), which file is being read and how far; then the rate. Nothing
    when stderr is not a terminal."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self.shown = sys.stderr.isatty()
        self.started = time.monotonic()
        self.bytes = 0

    def __enter__(self) -> Progress:
        return self

    def file(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            self.bytes += path.stat().st_size
        if self.shown:
            done = self.files.index(path) if path in self.files else 0
            sys.stderr.write(f"\r\x1b[2Kreading {done + 1}/{len(self.files)}: {path.name}")
            sys.stderr.flush()

    def __exit__(self, *exc: object) -> None:
        if self.shown:
            seconds = max(time.monotonic() - self.started, 1e-6)
            rate = self.bytes / seconds / 2**20
            sys.stderr.write(
                f"\r\x1b[2Kread {len(self.files)} files, {self.bytes / 2**20:.1f} MiB on disk, "
                f"in {seconds:.1f} s ({rate:.1f} MiB/s)\n"
            )
            sys.stderr.flush()


@guarded
def report_command(args: argparse.Namespace) -> int:
    try:
        filters = Filters(
            since=parse_when(args.since) if args.since else None,
            until=parse_when(args.until) if args.until else None,
            site=args.site,
            last_session=args.session == "last",
        )
        files = _inputs(args)
        problems = Problems()
        with Progress(files) as progress:
            report = build(read_lines(files, problems, progress.file), filters)
    except ReportError as exc:
        print(f"shopguard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    report.problems = problems
    report.files = [str(f) for f in files]
    data = to_json(report)
    out: IO[str] = sys.stdout
    try:
        if args.output is not None:  # (private: a report is a shopping history too)
            fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            out = os.fdopen(fd, "w", encoding="utf-8")
        if args.format == "html":
            from shopguard.cli.report_html import write_html

            write_html(data, out)
        elif args.format == "json":
            json.dump(data, out, ensure_ascii=False, indent=2)
            print(file=out)
        elif args.format == "markdown":
            write_markdown(data, out)
        else:
            write_table(data, out)
    except OSError as exc:
        print(f"shopguard: {args.output}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if out is not sys.stdout:
            out.close()
    return EXIT_OK
