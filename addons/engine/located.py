"""YAML with line numbers, and a small strict checker that reports file, line, key and expectation.

PyYAML's composer keeps every node's position; we turn nodes into `Located` values so that each
validation error can name the exact line of the offending key or value.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class ConfigError:
    """One problem in a configuration file, printed as `file:line: key: message`."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigErrors(Exception):
    """Every error found while loading configuration."""

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("\n".join(map(str, errors)))
        self.errors = errors


@dataclass(frozen=True)
class Located:
    """A YAML value with the line (1-based) it starts on and its key path in the document."""

    value: Any  # dict[str, Located] | list[Located] | scalar
    line: int
    key: str
    key_line: int = 0  # the line of the mapping key naming this value, if any


def _child_key(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


class _Builder:
    def __init__(
        self, file: str, errors: list[ConfigError], private: Collection[str] | None
    ) -> None:
        self.file = file
        self.errors = errors
        self.private = private
        self.constructor = yaml.SafeLoader("")

    def _key(self, key: str) -> str:
        return key if self.private is None else private_key(key, self.private)

    def build(self, node: yaml.Node, key: str, key_line: int = 0) -> Located:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            items: dict[str, Located] = {}
            self.constructor.flatten_mapping(node)
            for key_node, value_node in node.value:
                name = self.constructor.construct_object(key_node, deep=True)
                kline = key_node.start_mark.line + 1
                if not isinstance(name, str):
                    got = _describe(name, self.private is None)
                    self.errors.append(
                        ConfigError(
                            self.file, kline, self._key(key), f"keys must be text, got {got}"
                        )
                    )
                    continue
                if name in items:
                    self.errors.append(
                        ConfigError(
                            self.file,
                            kline,
                            self._key(_child_key(key, name)),
                            f"duplicate key (first given on line {items[name].key_line})",
                        )
                    )
                    continue
                items[name] = self.build(value_node, _child_key(key, name), kline)
            return Located(items, line, key, key_line or line)
        if isinstance(node, yaml.SequenceNode):
            return Located(
                [self.build(n, _child_key(key, i)) for i, n in enumerate(node.value)],
                line,
                key,
                key_line or line,
            )
        return Located(self.constructor.construct_object(node), line, key, key_line or line)


def load_located(
    path: Path, display: str | None = None, private: Collection[str] | None = None
) -> tuple[Located | None, list[ConfigError]]:
    """Parse one YAML file; on failure return None and the errors (with their lines)."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [ConfigError(name, 1, "", f"cannot read file: {exc}")]
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or (str(exc) if private is None else "invalid YAML")
        return None, [ConfigError(name, line, "", f"YAML syntax error: {problem}")]
    except yaml.YAMLError as exc:
        return None, [ConfigError(name, 1, "", f"YAML error: {exc}")]
    if node is None:
        return Located({}, 1, ""), []
    errors: list[ConfigError] = []
    try:
        located = _Builder(name, errors, private).build(node, "")
    except yaml.YAMLError as exc:  # e.g. an unknown tag
        line = node.start_mark.line + 1
        return None, [*errors, ConfigError(name, line, "", f"YAML error: {exc}")]
    return located, errors


_TYPE_NAMES = {bool: "true or false", int: "a whole number", str: "text", float: "a number"}


def _describe(value: Any, shown: bool = True) -> str:
    """A value as an error message names it: itself, or (in a file of personal values) its type."""
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    return repr(value) if shown else _TYPE_NAMES.get(type(value), "a value")


_KEY_PART = re.compile(r"(\[\d+\])|([^.\[]+)")


def private_key(key: str, names: Collection[str]) -> str:
    """A key path as an error names it in a file of personal values: names other than `names`
    (a value typed where a key goes) written `***`, list positions kept: `phone[0]` as it is,
    `13800138000` -> `***`."""
    return _KEY_PART.sub(
        lambda m: m.group(1) or (m.group(2) if m.group(2) in names else "***"), key
    )


@dataclass
class Checker:
    """Strict readers over Located values that collect errors instead of raising."""

    file: str
    errors: list[ConfigError] = field(default_factory=list)
    # a file of personal values (the profile): its errors name only these keys and no values
    private: Collection[str] | None = None

    def error(self, at: Located, message: str, *, on_key: bool = False) -> None:
        key = at.key if self.private is None else private_key(at.key, self.private)
        self.errors.append(ConfigError(self.file, at.key_line if on_key else at.line, key, message))

    def describe(self, value: Any) -> str:
        return _describe(value, self.private is None)

    def mapping(
        self, at: Located, allowed: Collection[str], required: Collection[str] = ()
    ) -> dict[str, Located] | None:
        """The mapping's entries; unknown keys and missing required keys are errors."""
        if not isinstance(at.value, dict):
            self.error(at, f"expected a mapping, got {self.describe(at.value)}")
            return None
        for name, value in at.value.items():
            if name not in allowed:
                self.error(
                    value,
                    f"unknown key (expected one of: {', '.join(allowed)})",
                    on_key=True,
                )
        for name in required:
            if name not in at.value:
                self.error(at, f"missing required key {name!r}")
        return {k: v for k, v in at.value.items() if k in allowed}

    def scalar(self, at: Located, kind: type, *, allow_none: bool = False) -> Any:
        value = at.value
        if value is None and allow_none:
            return None
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            self.error(
                at, f"expected {_TYPE_NAMES.get(kind, kind.__name__)}, got {self.describe(value)}"
            )
            return None
        return value

    def choice(self, at: Located, choices: Collection[str]) -> str | None:
        value = at.value
        if not isinstance(value, str) or value not in choices:
            self.error(at, f"expected one of {', '.join(choices)}, got {self.describe(value)}")
            return None
        return value

    def integer(self, at: Located, minimum: int) -> int | None:
        value = self.scalar(at, int)
        if value is not None and value < minimum:
            self.error(at, f"expected a whole number >= {minimum}, got {value}")
            return None
        return value  # type: ignore[no-any-return]

    def items(self, at: Located) -> Iterator[Located]:
        """The entries of a list (a wrong type is an error and yields nothing)."""
        if not isinstance(at.value, list):
            self.error(at, f"expected a list, got {self.describe(at.value)}")
            return
        yield from at.value


_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(value: Any) -> int | None:
    """Bytes from `2097152`, `2MiB`, `512k`; None if not a size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        return None
    m = _SIZE.match(value)
    if not m:
        return None
    unit = (m.group(2) or "").lower()[:1]
    return int(m.group(1)) * _UNITS[unit]
