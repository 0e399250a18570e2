"""The JSON-lines audit log: structlog over a private, rotating, per-line flushed file."""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import time
from collections.abc import MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from shopguard.paths import private_dir

SCHEMA = 1
_FIRST_KEYS = ("schema", "timestamp", "event")


def add_schema(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Stamp every line with the log schema version, so readers can tell formats apart."""
    event_dict["schema"] = SCHEMA
    return event_dict


def order_keys(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Put schema, timestamp and event first: the lines stay readable with `less`."""
    ordered = {k: event_dict.pop(k) for k in _FIRST_KEYS if k in event_dict}
    ordered.update(event_dict)
    return ordered


class RotatingFile:
    """An append-only file of mode 600 in a directory of mode 700, rotated by size.

    Each line goes to the operating system in one `write`, so a killed proxy loses at most the
    line being written. Rotated files are gzip-compressed as `<name>.<UTC time>.gz`; at most
    `keep` of them are kept, and none older than `max_age_days` (0: no age limit).
    """

    def __init__(self, path: Path, rotate_bytes: int, keep: int, max_age_days: int) -> None:
        self.path = path
        self.rotate_bytes = rotate_bytes
        self.keep = keep
        self.max_age_days = max_age_days
        self._fd: int | None = None
        self._size = 0

    def open(self) -> None:
        """Create the directory and file with private modes; raises OSError."""
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
        self._fd = fd
        self._size = info.st_size if stat.S_ISREG(info.st_mode) else 0
        self.prune()

    @property
    def is_regular(self) -> bool:
        return self._fd is not None and stat.S_ISREG(os.fstat(self._fd).st_mode)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def msg(self, message: str) -> None:
        """Write one line; raises OSError when it cannot be written."""
        if self._fd is None:
            self.open()
        data = (message + "\n").encode("utf-8")
        if self._size and self._size + len(data) > self.rotate_bytes and self.is_regular:
            self.rotate()
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)

    info = warning = error = msg

    def rotated(self) -> list[Path]:
        """Rotated files, oldest first."""
        return sorted(self.path.parent.glob(self.path.name + ".*.gz"))

    def rotate(self) -> None:
        self.close()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.path.with_name(f"{self.path.name}.{stamp}.gz")
        moved = self.path.with_name(f"{self.path.name}.{stamp}")
        os.replace(self.path, moved)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with (
            open(moved, "rb") as src,
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", filename="") as out,
        ):
            shutil.copyfileobj(src, out)
        os.unlink(moved)
        self.open()

    def prune(self) -> None:
        """Apply `keep` and `max_age_days` to rotated files."""
        old = self.rotated()
        excess = old[: max(0, len(old) - self.keep)]
        if self.max_age_days:
            limit = time.time() - self.max_age_days * 86400
            excess += [p for p in old if p not in excess and p.stat().st_mtime < limit]
        for path in excess:
            path.unlink(missing_ok=True)


class AuditLog:
    """shopguard's JSON-lines log. `write` raises OSError when the line could not be written."""

    def __init__(self, path: Path, rotate_bytes: int, keep: int, max_age_days: int) -> None:
        self.path = path
        self.file = RotatingFile(path, rotate_bytes, keep, max_age_days)
        self._logger = structlog.wrap_logger(
            self.file,
            processors=[
                add_schema,
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
                order_keys,
                structlog.processors.JSONRenderer(ensure_ascii=False, default=str),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(0),
            cache_logger_on_first_use=True,
        )

    def open(self) -> None:
        self.file.open()

    def close(self) -> None:
        self.file.close()

    def write(self, event: str, **fields: Any) -> None:
        self._logger.info(event, **fields)
