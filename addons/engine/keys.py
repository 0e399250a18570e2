"""What a key name says about its value, from the multilingual dictionary in `data/keys.yaml`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Any

import yaml

from shopguard.engine.composite import AGENT_HEADERS
from shopguard.engine.memory import remembered

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SPLIT = re.compile(r"[^a-z0-9$\u3000-\u9fff\uac00-\ud7af]+")
_CJK = re.compile(r"[\u3000-\u9fff\uac00-\ud7af]")


@remembered(2048)
def words(key: str) -> tuple[str, ...]:
    """`receiverMobileNo` -> ("receiver", "mobile", "no"); `$device_id` -> ("$device", "id")."""
    return tuple(w for w in _SPLIT.split(_CAMEL.sub(" ", key).lower()) if w)


GLUED = 5  # a phrase this long, written as one word, counts at the end of a longer word
_DIGEST_SUFFIXES = ("md5", "sha1", "sha256", "hash", "enc")  # `deviceidmd5`: a digest of one


@dataclass(frozen=True)
class _Category:
    phrases: frozenset[tuple[str, ...]]
    joined: frozenset[str]  # phrases written as one word: "receivermobile"
    cjk: tuple[str, ...]
    glued: tuple[str, ...] = ()  # joined phrases long enough to be found glued to others
    vetoes: frozenset[str] | None = None  # this category's own `not:` words

    def matches(self, key: str, key_words: tuple[str, ...]) -> bool:
        if any(term in key for term in self.cjk):
            return True
        whole = "".join(key_words)
        if whole in self.joined:
            return True
        for size in range(1, min(4, len(key_words)) + 1):
            for start in range(len(key_words) - size + 1):
                if key_words[start : start + size] in self.phrases:
                    return True
        return bool(self.glued) and _glued(key_words, self.glued)


def _glued(key_words: tuple[str, ...], glued: tuple[str, ...]) -> bool:
    """A word that ends with a long phrase written as one word (`clientdeviceid`,
    `xdevid`-like names glued to a prefix), or such a word followed by a digest's name
    (`deviceidmd5`): the rule that splits glued words, instead of listing each."""
    for word in key_words:
        for suffix in ("", *_DIGEST_SUFFIXES):
            if suffix and not word.endswith(suffix):
                continue
            stem = word[: len(word) - len(suffix)] if suffix else word
            if len(stem) > GLUED and stem.endswith(glued):
                return True
            if suffix and stem in glued:
                return True
    return False


def _category(entry: dict[str, Any], field: str = "words") -> _Category:
    terms = [str(t) for t in entry.get(field, [])]
    phrases = frozenset(words(t) for t in terms if not _CJK.search(t))
    joined = frozenset("".join(p) for p in phrases)
    glued = tuple(sorted(j for j in joined if len(j) >= GLUED)) if entry.get("glued") else ()
    vetoes = entry.get("not")
    return _Category(
        phrases,
        joined,
        tuple(str(t) for t in entry.get("cjk", [])),
        glued,
        frozenset(w for v in vetoes for w in words(str(v))) if vetoes is not None else None,
    )


class KeyDictionary:
    """Categories suggested by key names; `not` words veto (itemId is not an ID number)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.vetoes = frozenset(w for t in data.get("not", []) for w in words(str(t)))
        self.categories = {
            name: _category(entry)
            for name, entry in data.items()
            if name not in ("not", "geo") and isinstance(entry, dict)
        }
        # generic keys (`name`, `detail`, `post`) that count inside an object of a meaning
        self.inside = {
            name: (_category({"words": entry["generic"]}), _category({"words": entry["parents"]}))
            for name, entry in data.items()
            if isinstance(entry, dict) and "parents" in entry and "generic" in entry
        }
        self.near_address = _category({"words": data.get("postcode", {}).get("near_address", [])})
        self.near_address_keys = frozenset(  # as keys are written: post, Post, POST
            v
            for w in data.get("postcode", {}).get("near_address", [])
            for v in (w, w.title(), w.upper())
        )
        geo = data.get("geo", {})
        self.latitude = _category({"words": geo.get("latitude", [])})
        self.longitude = _category({"words": geo.get("longitude", [])})
        self.location = _category({"words": geo.get("location", []), "cjk": geo.get("cjk", [])})

    @remembered(2048)  # one dictionary per process, keys repeat a lot
    def categories_of(self, key: str, parent: str = "") -> frozenset[str]:
        """The categories a value under `key` (inside `parent`) is likely to be."""
        if not key:
            return frozenset()
        key_words = words(key)
        vetoed = not self.vetoes.isdisjoint(key_words)
        found = {
            name
            for name, cat in self.categories.items()
            if (cat.vetoes.isdisjoint(key_words) if cat.vetoes is not None else not vetoed)
            and cat.matches(key, key_words)
        }
        if parent and not vetoed:
            for name, (generic, parents) in self.inside.items():
                if key_words in generic.phrases and parents.matches(parent, words(parent)):
                    found.add(name)
        if "tracking_id" in found:  # `umidToken`, `deviceFingerprint`: the longer phrase says
            found.discard("device_id")  # what it is (a fingerprint token, not the device's ID)
        return frozenset(found)

    @remembered(1024)
    def ip_context_ok(self, key: str, parent: str) -> bool:
        """Whether an address found by its shape under `key` may be the user's: not under a
        key (or parent) that names a version, a server or another machine."""
        if parent in AGENT_HEADERS:  # a User-Agent's products: `Chrome/124.0.0.0`
            return False
        vetoes = self.categories["ip_address"].vetoes if "ip_address" in self.categories else None
        if not vetoes:
            return True
        return vetoes.isdisjoint(words(key)) and vetoes.isdisjoint(words(parent))

    @remembered(1024)
    def postcode_near_address(self, key: str) -> bool:
        """A short key (`post`) that is a postcode when address fields are beside it."""
        return bool(key) and words(key) in self.near_address.phrases

    @remembered(1024)
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
