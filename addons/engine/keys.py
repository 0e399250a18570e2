"""What a key name says about its value, from the multilingual dictionary in `data/keys.yaml`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Any

import yaml

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SPLIT = re.compile(r"[^a-z0-9$\u3000-\u9fff\uac00-\ud7af]+")
_CJK = re.compile(r"[\u3000-\u9fff\uac00-\ud7af]")


@lru_cache(maxsize=8192)
def words(key: str) -> tuple[str, ...]:
    """`receiverMobileNo` -> ("receiver", "mobile", "no"); `$device_id` -> ("$device", "id")."""
    return tuple(w for w in _SPLIT.split(_CAMEL.sub(" ", key).lower()) if w)


@dataclass(frozen=True)
class _Category:
    phrases: frozenset[tuple[str, ...]]
    joined: frozenset[str]  # phrases written as one word: "receivermobile"
    cjk: tuple[str, ...]

    def matches(self, key: str, key_words: tuple[str, ...]) -> bool:
        if any(term in key for term in self.cjk):
            return True
        if "".join(key_words) in self.joined:
            return True
        for size in range(1, min(4, len(key_words)) + 1):
            for start in range(len(key_words) - size + 1):
                if key_words[start : start + size] in self.phrases:
                    return True
        return False


def _category(entry: dict[str, Any], field: str = "words") -> _Category:
    terms = [str(t) for t in entry.get(field, [])]
    phrases = frozenset(words(t) for t in terms if not _CJK.search(t))
    joined = frozenset("".join(p) for p in phrases)
    return _Category(phrases, joined, tuple(str(t) for t in entry.get("cjk", [])))


class KeyDictionary:
    """Categories suggested by key names; `not` words veto (itemId is not an ID number)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.vetoes = frozenset(w for t in data.get("not", []) for w in words(str(t)))
        self.categories = {
            name: _category(entry)
            for name, entry in data.items()
            if name not in ("not", "geo") and isinstance(entry, dict)
        }
        name_entry = data.get("name", {})
        self.name_parents = _category({"words": name_entry.get("parents", [])})
        geo = data.get("geo", {})
        self.latitude = _category({"words": geo.get("latitude", [])})
        self.longitude = _category({"words": geo.get("longitude", [])})
        self.location = _category({"words": geo.get("location", []), "cjk": geo.get("cjk", [])})

    @lru_cache(maxsize=4096)  # noqa: B019 - one dictionary per process, keys repeat a lot
    def categories_of(self, key: str, parent: str = "") -> frozenset[str]:
        """The categories a value under `key` (inside `parent`) is likely to be."""
        if not key:
            return frozenset()
        key_words = words(key)
        if self.vetoes.intersection(key_words):
            return frozenset()
        found = {name for name, cat in self.categories.items() if cat.matches(key, key_words)}
        if key_words == ("name",) and parent and self.name_parents.matches(parent, words(parent)):
            found.add("name")
        return frozenset(found)

    @lru_cache(maxsize=4096)  # noqa: B019
    def geo_role(self, key: str) -> str | None:
        """ "lat", "lng" or "location" for coordinate keys."""
        key_words = words(key)
        if self.latitude.matches(key, key_words):
            return "lat"
        if self.longitude.matches(key, key_words):
            return "lng"
        if self.location.matches(key, key_words):
            return "location"
        return None


@lru_cache(maxsize=1)
def default_dictionary() -> KeyDictionary:
    text = (files("shopguard") / "data" / "keys.yaml").read_text(encoding="utf-8")
    return KeyDictionary(yaml.safe_load(text))
