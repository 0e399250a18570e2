"""JSON documents that the request editor reads and edits at a location's steps."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from shopguard.engine import location as loc
from shopguard.engine.location import DOCUMENT, INDEX, NAME, Step

REMOVED = object()  # a removed array item, until the document is written back


class Embedded:
    """JSON written inside a JSON string (mtop's `params`, `exParams`), parsed to be edited;
    written back as a string."""

    def __init__(self, value: Any) -> None:
        self.value = value


def faithful(text: str | None) -> Any:
    """Parsed JSON that can be written back faithfully; None otherwise (not JSON, duplicate
    keys, numbers beyond a double: re-encoding would change what the site receives)."""
    if not text or text.strip()[:1] not in "{[":
        return None
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, (dict, list)) or not _finite(value):
        return None
    return value


UNFAITHFUL = (
    "the JSON cannot be written back as it came (duplicate keys, numbers beyond a double, or "
    "nested too deep): it is left as it is"
)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate keys")
    return result


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite(value: Any, depth: int = 0) -> bool:
    """No infinite number (re-encoded, it would change) and no nesting too deep to write back
    (the extraction reads 64 levels: deeper ones make the request partially inspected)."""
    if isinstance(value, float):
        return value not in (float("inf"), float("-inf"))
    if depth > 200:
        return False
    if isinstance(value, dict):
        return all(_finite(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v, depth + 1) for v in value)
    return True


def _without_removed(value: Any) -> Any:
    if isinstance(value, Embedded):
        return dumps(value.value)
    if isinstance(value, dict):
        return {k: _without_removed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_removed(v) for v in value if v is not REMOVED]
    return value


def dumps(value: Any) -> str:
    """Compact JSON as clients send it; \\u escapes where the text holds lone surrogates."""
    clean = _without_removed(value)
    text = json.dumps(clean, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(clean, separators=(",", ":"))
    return text


def scalar(value: Any) -> str | None:
    """A leaf as the extraction reads it (text), or None for a container."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value) if isinstance(value, float) else str(value)
    return None


def _path(root: Any, steps: Sequence[Step]) -> list[tuple[Any, Any]] | None:
    """(container, key) pairs along `steps` below the document's root; JSON inside a string
    value (a DOCUMENT step) is parsed once and kept, to be written back as a string."""
    node, path = root, list[tuple[Any, Any]]()
    for step in steps:
        if step.kind == DOCUMENT:
            if not path or not isinstance(node, (str, Embedded)):
                return None
            if isinstance(node, str):
                parsed = faithful(node)
                if parsed is None:
                    return None
                container, key = path[-1]
                node = container[key] = Embedded(parsed)
            node = node.value
        elif step.kind == INDEX and isinstance(node, list):
            index = int(step.value)
            if index >= len(node) or node[index] is REMOVED:
                return None
            path.append((node, index))
            node = node[index]
        elif step.kind == NAME and isinstance(node, dict) and step.value in node:
            path.append((node, step.value))
            node = node[step.value]
        else:
            return None
    return path or None


def get(root: Any, steps: Sequence[Step]) -> Any:
    """The value at `steps` below `root`, or None."""
    path = _path(root, steps)
    if not path:
        return None
    container, key = path[-1]
    return container[key]


def edit(root: Any, steps: Sequence[Step], value: str | None) -> bool:
    """Remove (`value` None) or set the value at `steps`; False when it is not there."""
    path = _path(root, steps)
    if not path:
        return False
    container, key = path[-1]
    if value is None and isinstance(container, list):
        container[key] = REMOVED  # later paths into this array keep their positions
    elif value is None:
        del container[key]
    else:
        old = container[key]
        container[key] = (
            value if isinstance(old, str) or not value.lstrip("-").isdigit() else int(value)
        )
    return True


def keys_named(root: Any, base: str, rule_for: Callable[[str], Any]) -> list[tuple[str, Any]]:
    """(location, rule) of every key at any depth below `base` (`body:$`) that `rule_for`
    names, also inside JSON written in a string value."""
    found: list[tuple[str, Any]] = []
    stack: list[tuple[Any, str, int]] = [(root, base, 0)]
    while stack and len(found) < 1000:
        node, location, depth = stack.pop()
        if depth > 64:
            continue
        if isinstance(node, dict):
            for key, child in node.items():
                rule = rule_for(str(key))
                here = loc.member(location, str(key))
                if rule is not None:
                    found.append((here, rule))
                elif isinstance(child, (dict, list)):
                    stack.append((child, here, depth + 1))
                elif isinstance(child, str) and child[:1] in ("{", "["):
                    inner = faithful(child)  # JSON inside a string value
                    if inner is not None:
                        stack.append((inner, loc.document(here), depth + 1))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                if isinstance(child, (dict, list)):
                    stack.append((child, loc.item(location, index), depth + 1))
    return found
