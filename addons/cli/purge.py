"""`shopguard purge`: the log is itself a purchase history; old lines go in one command.

Each file is rewritten whole into a new private file beside it, then renamed over the old one,
so a crash leaves either the old file or the new, never half of one. A log a running proxy
holds (its lock file) is left alone.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from datetime import datetime
from pathlib import Path

from shopguard.auditlog import lock_path
from shopguard.cli.common import load_or_report
from shopguard.cli.exits import EXIT_OK, EXIT_USAGE, guarded
from shopguard.cli.report import ReportError, log_inputs, parse_when

try:
    import fcntl
except ImportError:  # (not on Windows)
    fcntl = None  # type: ignore[assignment]

_SITE_EVENTS = ("flow", "ws_message", "tls_failed", "host_mismatch")  # lines about one site


def _goes(text: str, cutoff: datetime, site: str | None) -> bool:
    """Whether a line is purged: older than `cutoff` (and, with `site`, about that site)."""
    try:
        line = json.loads(text)
        when = datetime.fromisoformat(line["timestamp"])
    except (ValueError, KeyError, TypeError):
        return False  # (what cannot be read is kept, for `report` to count)
    if when >= cutoff:
        return False
    if site is None:
        return True
    return line.get("event") in _SITE_EVENTS and site in (line.get("site"), line.get("via"))


def _rewrite(path: Path, cutoff: datetime, site: str | None, dry_run: bool) -> tuple[int, int]:
    """(lines purged, lines kept) of one file; rewritten unless `dry_run` or nothing goes."""
    packed = path.read_bytes()[:2] == b"\x1f\x8b"
    raw = gzip.decompress(path.read_bytes()) if packed else path.read_bytes()
    lines = raw.decode("utf-8", "replace").splitlines(keepends=True)
    kept = [line for line in lines if not _goes(line, cutoff, site)]
    gone = len(lines) - len(kept)
    if dry_run or not gone:
        return gone, len(kept)
    if not kept and path.name.endswith(".gz"):
        path.unlink()  # a rotated file of nothing but old lines
        return gone, 0
    data = "".join(kept).encode("utf-8")
    stat = path.stat()
    part = path.with_name(path.name + ".purge")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(gzip.compress(data) if packed else data)
        out.flush()
        os.fsync(out.fileno())
    os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # (max_age_days reads the time)
    os.replace(part, path)
    return gone, len(kept)


@guarded
def purge_command(args: argparse.Namespace) -> int:
    try:
        if not args.older_than:
            raise ReportError("--older-than is required (e.g. 30d)")
        cutoff = parse_when(args.older_than)
        config = None if args.logs else load_or_report(args.config)
        if config is None and not args.logs:
            raise ReportError("the configuration has errors (above)")
        files, live = log_inputs(args.logs, config)
    except ReportError as exc:
        print(f"shopguard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    lock = None
    if fcntl is not None and lock_path(live).exists() and not args.dry_run:
        lock = os.open(lock_path(live), os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock)
            print(
                f"shopguard: {live} is in use by a running shopguard: stop it first "
                "(purge rewrites the files)",
                file=sys.stderr,
            )
            return EXIT_USAGE
    verb = "would remove" if args.dry_run else "removed"
    total = 0
    try:
        for path in files:
            try:
                gone, kept = _rewrite(path, cutoff, args.site, args.dry_run)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                print(f"shopguard: {path}: {exc}", file=sys.stderr)
                return EXIT_USAGE
            total += gone
            if gone:
                whole = " (the whole file)" if not kept and path.name.endswith(".gz") else ""
                print(f"{path}: {verb} {gone} lines, {kept} kept{whole}")
    finally:
        if lock is not None:
            os.close(lock)
    when = cutoff.astimezone().strftime("%Y-%m-%d %H:%M")
    scope = f" of {args.site}" if args.site else ""
    print(f"{verb} {total} lines{scope} older than {when} from {len(files)} files")
    return EXIT_OK
