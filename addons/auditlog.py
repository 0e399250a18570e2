"""The JSON-lines audit log: structlog over a private, rotating, per-line flushed file."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import stat
import sys
import time
from collections.abc import MutableMapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

try:
    import fcntl
    import resource
except ImportError:  # (not on Windows)
    fcntl = None  # type: ignore[assignment]
    resource = None  # type: ignore[assignment]

from shopguard.paths import private_dir

SCHEMA = 1


_encode = json.JSONEncoder(ensure_ascii=False, default=str).encode


def render(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> str:
    """The line as JSON: stamped with the log schema version (so readers can tell formats
    apart) and the UTC time, and with schema, timestamp and event first (the lines stay
    readable with `less`). One processor, as it runs for every request."""
    event_dict.pop("schema", None)
    event_dict.pop("timestamp", None)
    line = {
        "schema": SCHEMA,
        "timestamp": datetime.now(tz=UTC).isoformat().replace("+00:00", "Z"),
        "event": event_dict.pop("event", None),
    }
    line.update(event_dict)
    return _encode(line)


class RotatingFile:
    """An append-only file of mode 600 in a directory of mode 700, rotated by size.

    Each line goes to the operating system in one `write`, so a killed proxy loses at most the
    line being written. Rotated files are gzip-compressed as `<name>.<UTC time>.gz` by a
    background thread (compressing 10 MiB would stall the proxy for a third of a second); a
    rotated file a killed proxy left uncompressed is compressed when the log is next opened. At
    most `keep` of them are kept, and none older than `max_age_days` (0: no age limit).
    """

    def __init__(self, path: Path, rotate_bytes: int, keep: int, max_age_days: int) -> None:
        self.path = path
        self.rotate_bytes = rotate_bytes
        self.keep = keep
        self.max_age_days = max_age_days
        self._fd: int | None = None
        self._size = 0
        self._compressor: ThreadPoolExecutor | None = None
        self._regular = False
        self._queued: set[Path] = set()  # rotated files handed to the compressor
        self._torn = False  # the last line was cut short and is still in the file

    def open(self) -> None:
        """Create the directory and file with private modes; raises OSError."""
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
        self._fd = fd
        self._regular = stat.S_ISREG(info.st_mode)  # (not /dev/stdout or a pipe)
        self._size = info.st_size if self._regular else 0
        for left in self.uncompressed():
            self._compress_later(left)
        self.prune()

    def room(self) -> int | None:
        """Bytes free on the file's file system, or below the process's file size limit
        (None: not a regular file, or not known)."""
        statvfs = getattr(os, "fstatvfs", None)  # (not on Windows)
        if self._fd is None or statvfs is None or not self.is_regular:
            return None
        try:
            info = statvfs(self._fd)
        except OSError:
            return None
        room = int(info.f_bavail * info.f_frsize)
        if resource is not None:  # a file size limit on the process is as final as a full disk
            limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
            if limit != resource.RLIM_INFINITY:
                room = min(room, max(0, limit - self._size))
        return room

    @property
    def is_regular(self) -> bool:
        return self._fd is not None and self._regular

    def close(self) -> None:
        """Close the file, after the rotated files being compressed are done."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._compressor is not None:
            self._compressor.shutdown(wait=True)
            self._compressor = None

    def msg(self, message: str) -> None:
        """Write one line; raises OSError when it cannot be written."""
        if self._fd is None:
            self.open()
        data = (message + "\n").encode("utf-8")
        if self._size and self._size + len(data) > self.rotate_bytes and self.is_regular:
            self.rotate()
        assert self._fd is not None
        if self._torn:  # a line cut short that could not be taken back: end it first
            os.write(self._fd, b"\n")
            self._torn = False
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError:
            if len(view) < len(data):
                self._take_back(len(data) - len(view))
            raise
        self._size += len(data)

    def _take_back(self, written: int) -> None:
        """Remove the start of a line the file system had no room for the rest of (a full
        disk, a file size limit), so that the next line is not glued to it."""
        assert self._fd is not None
        try:
            if not self.is_regular:
                raise OSError("not a regular file")
            os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
        except OSError:
            self._torn = True  # (the next line starts on a line of its own)

    info = warning = error = msg

    def rotated(self) -> list[Path]:
        """Rotated files, oldest first."""
        return sorted(self.path.parent.glob(self.path.name + ".*.gz"))

    def uncompressed(self) -> list[Path]:
        """Rotated files not compressed yet (moved aside, then the proxy was stopped)."""
        pattern = re.compile(re.escape(self.path.name) + r"\.\d{8}T\d{12}Z")
        return sorted(p for p in self.path.parent.iterdir() if pattern.fullmatch(p.name))

    def rotate(self) -> None:
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        moved = self.path.with_name(f"{self.path.name}.{stamp}")
        os.replace(self.path, moved)
        self.open()  # (which hands `moved` to the compressor)

    def _compress_later(self, moved: Path) -> None:
        if moved in self._queued:
            return
        if self._compressor is None:
            self._compressor = ThreadPoolExecutor(1, thread_name_prefix="shopguard-log")
        self._queued.add(moved)
        self._compressor.submit(self._compress, moved)

    def _compress(self, moved: Path) -> None:
        """`moved` to `moved.gz` (written as `.gz.part`, renamed when complete), then prune.

        On failure (a full disk) the uncompressed file stays, to be tried again at next open.
        """
        target = moved.with_name(moved.name + ".gz")
        partial = moved.with_name(moved.name + ".gz.part")
        try:
            try:
                source = moved.stat()
            except FileNotFoundError:
                return  # compressed already (listed by an open() while it was being done)
            partial.unlink(missing_ok=True)  # (left by a killed proxy, with any mode)
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with (
                open(moved, "rb") as src,
                os.fdopen(fd, "wb") as raw,
                gzip.GzipFile(fileobj=raw, mode="wb", filename="") as out,
            ):
                shutil.copyfileobj(src, out)
            # the archive is as old as its last line, for max_age_days
            os.utime(partial, ns=(source.st_atime_ns, source.st_mtime_ns))
            os.replace(partial, target)
            os.unlink(moved)
            self.prune()
        except OSError as exc:
            partial.unlink(missing_ok=True)
            print(f"shopguard: could not compress {moved}: {exc}", file=sys.stderr)
        finally:
            self._queued.discard(moved)

    def prune(self) -> None:
        """Apply `keep` and `max_age_days` to rotated files."""
        old = self.rotated()
        excess = old[: max(0, len(old) - self.keep)]
        if self.max_age_days:
            limit = time.time() - self.max_age_days * 86400
            excess += [p for p in old if p not in excess and _mtime(p) < limit]
        for path in excess:
            path.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    """Modification time; infinity for a file gone meanwhile (pruned by the other thread)."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


def lock_path(log: Path) -> Path:
    return log.with_name(log.name + ".lock")


def hold_lock(log: Path) -> int | None:
    """A shared lock on `<log>.lock`, held while a proxy writes the log: `shopguard purge`
    (which takes it exclusively) refuses to rewrite a log in use. None where locks do not exist
    or the lock file cannot be made (the log works without)."""
    if fcntl is None:
        return None
    try:
        fd = os.open(lock_path(log), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # (waits for a purge under way: it is brief)
    except OSError:
        os.close(fd)
        return None
    return fd


class AuditLog:
    """shopguard's JSON-lines log. `write` raises OSError when the line could not be written."""

    def __init__(self, path: Path, rotate_bytes: int, keep: int, max_age_days: int) -> None:
        self._lock: int | None = None
        self.path = path
        self.file = RotatingFile(path, rotate_bytes, keep, max_age_days)
        self._logger = structlog.wrap_logger(
            self.file,
            processors=[render],
            wrapper_class=structlog.make_filtering_bound_logger(0),
            cache_logger_on_first_use=True,
        )

    def open(self) -> None:
        self.file.open()
        self._lock = hold_lock(self.path)

    def close(self) -> None:
        self.file.close()
        if self._lock is not None:
            os.close(self._lock)  # (which releases the lock)
            self._lock = None

    def room(self) -> int | None:
        return self.file.room()

    def write(self, event: str, **fields: Any) -> None:
        self._logger.info(event, **fields)
