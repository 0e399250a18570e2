"""`shopguard scan`: the personal data in saved captures (HAR 1.2, mitmproxy flow files)."""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shopguard.cli.common import build_detector, load_or_report
from shopguard.cli.exits import EXIT_FOUND, EXIT_OK, EXIT_USAGE, guarded
from shopguard.engine.detect import Detector
from shopguard.engine.findings import CATEGORIES, Finding
from shopguard.engine.location import segment_index
from shopguard.engine.masking import host_labels, mask_host, mask_path
from shopguard.engine.pipeline import Context, process, route_request
from shopguard.engine.request import PlainRequest
from shopguard.engine.settings import Config
from shopguard.engine.trackers import Linker


class CaptureError(Exception):
    """A capture that cannot be read; the message names the file and, if known, the entry."""


@dataclass(frozen=True)
class Entry:
    index: int
    request: PlainRequest | None  # None: the entry could not be read (see `problem`)
    problem: str = ""


def _har_headers(items: Any) -> list[tuple[str, str]]:
    if not isinstance(items, list):
        return []
    return [
        (str(h.get("name", "")), str(h.get("value", "")))
        for h in items
        if isinstance(h, dict) and h.get("name")
    ]


def _har_body(post: Any) -> bytes:
    if not isinstance(post, dict):
        return b""
    text = post.get("text")
    if isinstance(text, str):
        if post.get("encoding") == "base64":
            try:
                return base64.b64decode(text)
            except (binascii.Error, ValueError):
                return text.encode()
        return text.encode()
    params = post.get("params")
    if isinstance(params, list):  # some tools give forms as params only
        pairs = [f"{p.get('name', '')}={p.get('value', '')}" for p in params if isinstance(p, dict)]
        return "&".join(pairs).encode()
    return b""


def har_entries(path: Path, data: Any) -> Iterator[Entry]:
    log = data.get("log") if isinstance(data, dict) else None
    if not isinstance(log, dict) or not isinstance(log.get("entries"), list):
        raise CaptureError(f"{path}: not a HAR file (no log.entries)")
    version = str(log.get("version", ""))
    if version and not version.startswith("1."):
        raise CaptureError(f"{path}: HAR version {version} is not supported (expected 1.x)")
    for index, entry in enumerate(log["entries"]):
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or not isinstance(request.get("url"), str):
            yield Entry(index, None, "no request URL")
            continue
        response = entry.get("response")
        yield Entry(
            index,
            PlainRequest(
                method=str(request.get("method", "GET")),
                url=request["url"],
                headers=_har_headers(request.get("headers")),
                body=_har_body(request.get("postData")),
                response_headers=_har_headers(
                    response.get("headers") if isinstance(response, dict) else None
                ),
            ),
        )


def flow_entries(path: Path, body_cap: int) -> Iterator[Entry]:
    from mitmproxy import http, io
    from mitmproxy.exceptions import FlowReadException

    from shopguard.adapt import plain_request

    index = 0
    with path.open("rb") as handle:
        try:
            for flow in io.FlowReader(handle).stream():
                if isinstance(flow, http.HTTPFlow):
                    yield Entry(index, plain_request(flow, body_cap))
                index += 1
        except FlowReadException as exc:
            message = f"{path}: entry {index}: not a readable mitmproxy flow: {exc}"
            raise CaptureError(message) from exc


def read_capture(path: Path, body_cap: int) -> Iterator[Entry]:
    """The entries of a HAR or mitmproxy flow file; raises CaptureError for unreadable input."""
    try:
        head = path.open("rb").read(64).lstrip()
    except OSError as exc:
        raise CaptureError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if head.startswith(b'{"schema"') or (head.startswith(b"\x1f\x8b") and ".jsonl" in path.name):
        raise CaptureError(
            f"{path}: this is shopguard's own log, not a capture: read it with "
            f"`shopguard report {path}`"
        )
    if head.startswith(b"{"):
        try:
            data = json.loads(path.read_bytes())
        except (ValueError, RecursionError) as exc:
            raise CaptureError(f"{path}: not valid JSON (truncated HAR?): {exc}") from exc
        yield from har_entries(path, data)
        return
    if not head:
        raise CaptureError(f"{path}: empty file")
    yield from flow_entries(path, body_cap)


@dataclass(frozen=True)
class Result:
    file: str
    index: int
    url: str
    host: str
    site: str | None
    inspection: str
    findings: list[Finding]
    problem: str = ""


def masked_url(url: str, findings: list[Finding], names: Mapping[str, str]) -> str:
    """`url` as the log writes a path: query values, bare tokens, query names that may be values,
    and the path segments and host labels that carry a finding masked; no user:password@."""
    found = (segment_index(f.location) for f in findings)
    segments = {index for index in found if index is not None}
    labels = host_labels(f.location for f in findings)
    try:
        parts = urlsplit(url)
        netloc = mask_host(parts.netloc.rpartition("@")[2], labels)  # (never user:password@)
    except ValueError:  # not a URL Python can split: its path and query masked all the same
        scheme, _, rest = url.partition("://")
        authority, slash, path = rest.partition("/")
        masked = mask_path(slash + path, segments, names)
        return f"{scheme}://{authority.rpartition('@')[2]}{masked}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{netloc}{mask_path(parts.path + query, segments, names)}"


def scan_files(files: list[Path], config: Config, detector: Detector) -> Iterator[Result]:
    for path in files:
        ctx = Context(config, detector, Linker())  # each file is one browsing session
        for entry in read_capture(path, config.settings.body_cap):
            if entry.request is None:
                yield Result(str(path), entry.index, "", "", None, "none", [], entry.problem)
                continue
            request = entry.request
            result = process(ctx, request, route_request(ctx, request), inspect_unrouted=True)
            yield Result(
                str(path),
                entry.index,
                masked_url(request.url, result.findings, result.masked_names),
                mask_host(result.host, host_labels(f.location for f in result.findings)),
                result.site.name if result.site else None,
                result.inspection,
                result.findings,
            )


def _print_table(results: list[Result], out: Any) -> None:
    """The table of the requests with findings or problems. Every cell is a `Text`: what a
    capture holds (names, hosts, file names) is shown as written, never read as Rich markup."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="shopguard scan", show_lines=False)
    for column in ("file", "#", "host", "site", "categories", "locations"):
        table.add_column(column, overflow="fold")
    shown = 0
    for result in results:
        if not result.findings and not result.problem:
            continue
        shown += 1
        categories = sorted({f.category for f in result.findings})
        locations = "\n".join(
            f"{f.category}: {f.location}" + (f" [{f.transform}]" if f.transform else "")
            for f in sorted(result.findings, key=lambda f: (f.category, f.location))
        )
        cells = (
            Path(result.file).name,
            str(result.index),
            result.host,
            result.site or "-",
            ", ".join(categories) or result.problem,
            locations,
        )
        table.add_row(*map(Text, cells))
    console = Console(file=out, width=None if out.isatty() else 200)  # pipes: no folding
    if shown:
        console.print(table)
    counts: dict[str, int] = {}
    for result in results:
        for category in {f.category for f in result.findings}:
            counts[category] = counts.get(category, 0) + 1
    summary = ", ".join(f"{c} in {counts[c]}" for c in CATEGORIES if c in counts) or "nothing"
    console.print(f"{len(results)} requests scanned; personal data found: {summary}", markup=False)


@guarded
def scan(args: argparse.Namespace) -> int:
    fail_on = {c.strip() for c in (args.fail_on or "").split(",") if c.strip()}
    unknown = fail_on - set(CATEGORIES)
    if unknown:
        print(
            f"shopguard: --fail-on: unknown categories {', '.join(sorted(unknown))} "
            f"(expected some of: {', '.join(CATEGORIES)})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    config = load_or_report(args.config)
    if config is None:
        return EXIT_USAGE
    detector = build_detector(config, args.profile, args.min_confidence)
    if detector is None:
        return EXIT_USAGE
    results: list[Result] = []
    try:
        for result in _with_progress(scan_files(args.files, config, detector), args):
            results.append(result)
            if args.format == "jsonl":
                _print_jsonl(result)
    except CaptureError as exc:
        print(f"shopguard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for result in results:
        if result.problem:
            print(
                f"shopguard: {result.file}: entry {result.index}: {result.problem}", file=sys.stderr
            )
    if args.format == "json":
        json.dump([_result_dict(r) for r in results], sys.stdout, ensure_ascii=False, indent=2)
        print()
    elif args.format == "table":
        _print_table(results, sys.stdout)
    found = {f.category for r in results for f in r.findings}
    return EXIT_FOUND if fail_on & found else EXIT_OK


def _with_progress(results: Iterator[Result], args: argparse.Namespace) -> Iterator[Result]:
    """On a terminal, how many requests are scanned so far, on stderr (whatever the format:
    the results go to stdout); nothing when stderr is not a terminal."""
    if not sys.stderr.isatty():
        yield from results
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(
        transient=True, console=Console(stderr=True), redirect_stdout=False, redirect_stderr=False
    ) as progress:
        task = progress.add_task(f"scanning {len(args.files)} files", total=None)
        for result in results:
            progress.advance(task)
            yield result


def _result_dict(result: Result) -> dict[str, Any]:
    return {
        "file": result.file,
        "flow": result.index,
        "url": result.url,
        "host": result.host,
        "site": result.site,
        "inspection": result.inspection,
        "findings": [f.to_dict() for f in result.findings],
    }


def _print_jsonl(result: Result) -> None:
    for finding in result.findings:
        line = finding.to_dict() | {
            "flow": result.index,
            "file": result.file,
            "url": result.url,
            "host": result.host,
            "site": result.site,
        }
        print(json.dumps(line, ensure_ascii=False))
