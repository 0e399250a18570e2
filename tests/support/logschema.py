"""The audit log's JSON Schema, as the installed package ships it, and checks of lines against it.

`validate_line` and `validate_file` raise `LineError`, whose message names the event, the place
in the line and what the schema says; `problem` returns that message instead (None: valid).
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match


class LineError(AssertionError):
    """A log line that does not follow the schema."""


def schema() -> dict[str, Any]:
    """The schema file of the installed package (`shopguard/data/log.schema.json`)."""
    text = (files("shopguard") / "data" / "log.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def validator() -> Draft202012Validator:
    checked = schema()
    Draft202012Validator.check_schema(checked)
    return Draft202012Validator(checked)


def _describe(error: ValidationError) -> str:
    where = error.json_path if error.path else "the line"
    return f"{where}: {error.message}"


def problem(line: Any) -> str | None:
    """Why `line` (a decoded log line) does not follow the schema; None when it does."""
    error = best_match(validator().iter_errors(line))
    if error is None:
        return None
    event = line.get("event", "(no event)") if isinstance(line, dict) else "(not an object)"
    return f"log line of event {event!r} does not follow log.schema.json: {_describe(error)}"


def validate_line(line: Any) -> None:
    """Raise LineError when `line` (a decoded log line) does not follow the schema."""
    message = problem(line)
    if message is not None:
        raise LineError(f"{message}\n  line: {json.dumps(line, ensure_ascii=False)[:2000]}")


@lru_cache(maxsize=8192)
def raw_problem(raw: str) -> str | None:
    """`problem` of a line as written (a JSON error too); remembered by its text: a suite checks
    the same lines more than once (in a test, then when its proxy stops)."""
    try:
        line = json.loads(raw)
    except ValueError as exc:
        return f"not JSON ({exc})"
    message = problem(line)
    return None if message is None else f"{message}\n  line: {raw[:2000]}"


def validate_text(text: str, source: str = "log") -> int:
    """Check every line of a JSON-lines text; returns how many there were."""
    count = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw:
            continue
        message = raw_problem(raw)
        if message is not None:
            raise LineError(f"{source}:{number}: {message}")
        count += 1
    return count


def validate_file(path: Path) -> int:
    """Check every line of a log file (absent: none); returns how many there were."""
    if not path.exists():
        return 0
    return validate_text(path.read_text(encoding="utf-8"), str(path))
