"""Per-site policies: the rules of a site file (README, *Policies*), read strictly, with lines.

A site file's `trackers`, `fields`, `allow`, `on_uninspected` and `examples` become a `Policy`;
`redact` applies it to a request. Every rule remembers where it was written, so that every
action in the log, `policy explain` and `policy test` can name it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shopguard.engine.findings import CATEGORIES
from shopguard.engine.hosts import GlobError, GlobIndex, HostGlob, parse_glob
from shopguard.engine.located import Checker, Located

FIELD_ACTIONS = ("log", "strip", "replace", "block")
ON_UNINSPECTED = ("pass", "block")
TRACKER_KEYS = ("block", "strip_params", "strip_cookies", "strip_headers", "strip_fields")
FIELD_RULE_KEYS = ("action", "hosts")
ALLOW_KEYS = ("match", "fields", "keep")
EXAMPLE_KEYS = ("request", "headers", "body", "expect")
EXPECT_KEYS = ("action", "status", "strips", "replaces", "findings")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class UrlPattern:
    """`host-glob` or `host-glob/path-glob`: `*.mmstat.com/*.gif`, `temu.com/api/adx/*`.

    `*` in the path matches any characters; the path glob must match the whole path, and is
    matched against the path with its query only when it contains a `?`.
    """

    text: str
    host: HostGlob
    path: re.Pattern[str] | None  # None: every path
    with_query: bool = False

    def matches(self, host: str, path: str) -> bool:
        if not self.host.matches(host):
            return False
        return self.path is None or self.matches_path(path)

    def matches_path(self, path: str) -> bool:
        if self.path is None:
            return True
        target = path if self.with_query else path.split("?", 1)[0]
        return self.path.fullmatch(target) is not None


def parse_pattern(text: str) -> UrlPattern:
    """Parse a URL pattern, raising GlobError with a user-facing reason."""
    raw = text.strip()
    for scheme in ("https://", "http://"):
        if raw.lower().startswith(scheme):
            raw = raw[len(scheme) :]
    host_part, slash, path_part = raw.partition("/")
    host = parse_glob(host_part)
    if not slash or path_part in ("", "*"):
        return UrlPattern(text, host, None)
    glob = "/" + path_part
    regex = ".*".join(re.escape(piece) for piece in glob.split("*"))
    return UrlPattern(text, host, re.compile(regex, re.DOTALL), "?" in glob)


@dataclass(frozen=True)
class HostCondition:
    """Host globs a rule is limited to; `!glob` excludes. Empty: every host of the site."""

    include: tuple[HostGlob, ...] = ()
    exclude: tuple[HostGlob, ...] = ()

    def holds(self, host: str) -> bool:
        if self.include and not any(g.matches(host) for g in self.include):
            return False
        return not any(g.matches(host) for g in self.exclude)

    @property
    def text(self) -> str:
        return ", ".join([g.text for g in self.include] + [f"!{g.text}" for g in self.exclude])


EVERY_HOST = HostCondition()


@dataclass(frozen=True)
class Rule:
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class BlockRule(Rule):
    pattern: UrlPattern


@dataclass(frozen=True)
class NameRule(Rule):
    """A parameter, cookie, header or body field to strip: an exact name or a /regex/."""

    name: str  # as written
    regex: re.Pattern[str] | None
    hosts: HostCondition = EVERY_HOST

    def matches(self, name: str) -> bool:
        if self.regex is not None:
            return self.regex.search(name) is not None
        return name == self.name


@dataclass(frozen=True)
class FieldRule(Rule):
    """What to do with personal fields of one category (or the `default`)."""

    category: str
    action: str
    hosts: HostCondition = EVERY_HOST


@dataclass(frozen=True)
class AllowRule(Rule):
    """An exception: requests matching `pattern` keep these categories and names untouched.

    With neither `fields` nor `keep`, nothing at all is done to the matching requests.
    """

    pattern: UrlPattern
    fields: frozenset[str] | None  # None: every category
    keep: frozenset[str] | None  # names of params, cookies, headers or body fields; None: all

    @property
    def everything(self) -> bool:
        return self.fields is None and self.keep is None


@dataclass(frozen=True)
class Example(Rule):
    """A policy regression test: a request and what the site's policy must do with it."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: str | None
    expect: dict[str, Any]


@dataclass(frozen=True)
class Policy:
    block: tuple[BlockRule, ...] = ()
    strip_params: tuple[NameRule, ...] = ()
    strip_cookies: tuple[NameRule, ...] = ()
    strip_headers: tuple[NameRule, ...] = ()
    strip_fields: tuple[NameRule, ...] = ()
    fields: tuple[FieldRule, ...] = ()  # `default` and per category, later rules win
    allow: tuple[AllowRule, ...] = ()
    on_uninspected: str = "pass"
    on_uninspected_rule: str = ""  # file:line, when set in a file
    examples: tuple[Example, ...] = ()
    blocks: BlockIndex = field(init=False, repr=False, compare=False)
    _names: dict[tuple[str, str], NameIndex] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", BlockIndex(self.block))

    def strip_rules(self, kind: str, host: str) -> NameIndex:
        """The `strip_<kind>` rules (params, cookies, headers, fields) in force on `host`."""
        key = (kind, host)
        found = self._names.get(key)
        if found is None:
            rules = getattr(self, f"strip_{kind}")
            found = NameIndex([r for r in rules if r.hosts.holds(host)])
            if len(self._names) > 4096:
                self._names.clear()
            self._names[key] = found
        return found

    def field_rule(self, category: str, host: str) -> FieldRule | None:
        """The rule for `category` on `host`: the last matching one for it, else `default`."""
        for wanted in (category, "default"):
            for rule in reversed(self.fields):
                if rule.category == wanted and rule.hosts.holds(host):
                    return rule
        return None

    def allowances(self, host: str, path: str) -> list[AllowRule]:
        return [a for a in self.allow if a.pattern.matches(host, path)]

    def merged(self, other: Policy) -> Policy:
        """This policy with `other` laid over it (`extends: default`): lists grow, later wins."""
        return Policy(
            block=self.block + other.block,
            strip_params=self.strip_params + other.strip_params,
            strip_cookies=self.strip_cookies + other.strip_cookies,
            strip_headers=self.strip_headers + other.strip_headers,
            strip_fields=self.strip_fields + other.strip_fields,
            fields=self.fields + other.fields,
            allow=self.allow + other.allow,
            on_uninspected=other.on_uninspected
            if other.on_uninspected_rule
            else self.on_uninspected,
            on_uninspected_rule=other.on_uninspected_rule or self.on_uninspected_rule,
            examples=self.examples + other.examples,
        )


class NameIndex:
    """Strip rules by name: exact names in a dictionary, /regex/ rules tried in order."""

    def __init__(self, rules: Iterable[NameRule]) -> None:
        self.exact: dict[str, tuple[int, NameRule]] = {}
        self.patterns: list[tuple[int, NameRule]] = []
        for position, rule in enumerate(rules):
            if rule.regex is None:
                self.exact[rule.name] = (position, rule)
            else:
                self.patterns.append((position, rule))
        self.patterns.reverse()

    def __bool__(self) -> bool:
        return bool(self.exact or self.patterns)

    def find(self, name: str) -> NameRule | None:
        """The last-written rule naming `name` (later rules win)."""
        hit = self.exact.get(name)
        for position, rule in self.patterns:
            if hit is not None and position < hit[0]:
                break
            if rule.matches(name):
                return rule
        return hit[1] if hit is not None else None


class BlockIndex:
    """Block rules by host: a request costs a few dictionary lookups, not one test per rule."""

    def __init__(self, rules: Iterable[BlockRule]) -> None:
        self._globs = GlobIndex((rule.pattern.host, rule) for rule in rules)

    def __len__(self) -> int:
        return self._globs.size

    def find(self, host: str, path: str) -> BlockRule | None:
        """The last-written block rule matching the request (later rules win)."""
        best: tuple[int, BlockRule] | None = None
        for position, rule in self._globs.matching(host):
            if (best is None or position > best[0]) and rule.pattern.matches_path(path):
                best = (position, rule)
        return best[1] if best is not None else None


# -- reading -----------------------------------------------------------------------------------


def read_policy(entries: dict[str, Located], check: Checker) -> Policy:
    """The policy keys of one site file (`trackers`, `fields`, `allow`, `on_uninspected`,
    `examples`), with errors for everything that is not understood."""
    parts: dict[str, Any] = {}
    if "trackers" in entries:
        trackers = check.mapping(entries["trackers"], TRACKER_KEYS) or {}
        if "block" in trackers:
            parts["block"] = tuple(_read_blocks(trackers["block"], check))
        for kind in ("strip_params", "strip_cookies", "strip_headers", "strip_fields"):
            if kind in trackers:
                parts[kind] = tuple(_read_names(trackers[kind], check, kind == "strip_headers"))
    if "fields" in entries:
        parts["fields"] = tuple(_read_fields(entries["fields"], check))
    if "allow" in entries:
        parts["allow"] = tuple(_read_allow(entries["allow"], check))
    if "on_uninspected" in entries:
        at = entries["on_uninspected"]
        value = check.choice(at, ON_UNINSPECTED)
        if value is not None:
            parts["on_uninspected"] = value
            parts["on_uninspected_rule"] = f"{check.file}:{at.line}"
    if "examples" in entries:
        parts["examples"] = tuple(_read_examples(entries["examples"], check))
    return Policy(**parts)


def _read_blocks(at: Located, check: Checker) -> Iterable[BlockRule]:
    for item in check.items(at):
        if not isinstance(item.value, str):
            check.error(item, f"expected a host or host/path pattern, got {item.value!r}")
            continue
        try:
            yield BlockRule(check.file, item.line, parse_pattern(item.value))
        except GlobError as exc:
            check.error(item, str(exc))


def _read_names(at: Located, check: Checker, lower: bool) -> Iterable[NameRule]:
    """A list of names (every host of the site), or a mapping of host globs to lists."""
    if isinstance(at.value, dict):
        for glob_text, names in at.value.items():
            hosts = _read_condition([glob_text], names, check)
            if hosts is not None:
                yield from _names(names, check, lower, hosts)
        return
    yield from _names(at, check, lower, EVERY_HOST)


def _names(at: Located, check: Checker, lower: bool, hosts: HostCondition) -> Iterable[NameRule]:
    for item in check.items(at):
        text = item.value
        if not isinstance(text, str) or not text.strip():
            check.error(item, f"expected a name or a /regex/, got {text!r}")
            continue
        text = text.strip()
        regex = None
        if len(text) > 2 and text.startswith("/") and text.endswith("/"):
            try:
                regex = re.compile(text[1:-1], re.IGNORECASE if lower else 0)
            except re.error as exc:
                check.error(item, f"invalid regex {text!r}: {exc.msg}")
                continue
        yield NameRule(check.file, item.line, text.lower() if lower else text, regex, hosts)


def _read_condition(globs: Iterable[Any], at: Located, check: Checker) -> HostCondition | None:
    include: list[HostGlob] = []
    exclude: list[HostGlob] = []
    for text in globs:
        if not isinstance(text, str):
            check.error(at, f"expected a host glob (optionally with a leading !), got {text!r}")
            return None
        negated = text.strip().startswith("!")
        try:
            glob = parse_glob(text.strip().lstrip("!"))
        except GlobError as exc:
            check.error(at, str(exc), on_key=True)
            return None
        (exclude if negated else include).append(glob)
    return HostCondition(tuple(include), tuple(exclude))


def _read_fields(at: Located, check: Checker) -> Iterable[FieldRule]:
    entries = check.mapping(at, ("default", *CATEGORIES))
    for category, value in (entries or {}).items():
        hosts = EVERY_HOST
        if isinstance(value.value, dict):
            spec = check.mapping(value, FIELD_RULE_KEYS, required=("action",))
            if spec is None or "action" not in spec:
                continue
            action = check.choice(spec["action"], FIELD_ACTIONS)
            if "hosts" in spec:
                globs = [item.value for item in check.items(spec["hosts"])]
                condition = _read_condition(globs, spec["hosts"], check)
                if condition is None:
                    continue
                hosts = condition
            line = spec["action"].line
        else:
            action = check.choice(value, FIELD_ACTIONS)
            line = value.line
        if action is not None:
            yield FieldRule(check.file, line, category, action, hosts)


def _read_allow(at: Located, check: Checker) -> Iterable[AllowRule]:
    for item in check.items(at):
        spec = check.mapping(item, ALLOW_KEYS, required=("match",))
        if spec is None or "match" not in spec:
            continue
        text = check.scalar(spec["match"], str)
        if text is None:
            continue
        try:
            pattern = parse_pattern(text)
        except GlobError as exc:
            check.error(spec["match"], str(exc))
            continue
        fields: frozenset[str] | None = None
        if "fields" in spec:
            if spec["fields"].value == "all":
                fields = frozenset(CATEGORIES)
            else:
                listed = []
                for entry in check.items(spec["fields"]):
                    if entry.value in CATEGORIES:
                        listed.append(entry.value)
                    else:
                        check.error(
                            entry,
                            f"expected a category ({', '.join(CATEGORIES)}), got {entry.value!r}",
                        )
                fields = frozenset(listed)
        keep: frozenset[str] | None = None
        if "keep" in spec:
            keep = frozenset(
                str(entry.value) for entry in check.items(spec["keep"]) if entry.value is not None
            )
        if fields is not None and keep is None:
            keep = frozenset()
        elif keep is not None and fields is None:
            fields = frozenset()
        yield AllowRule(check.file, item.line, pattern, fields, keep)


def _read_examples(at: Located, check: Checker) -> Iterable[Example]:
    for item in check.items(at):
        spec = check.mapping(item, EXAMPLE_KEYS, required=("request", "expect"))
        if spec is None or "request" not in spec or "expect" not in spec:
            continue
        request = check.scalar(spec["request"], str)
        if request is None:
            continue
        method, _, url = request.strip().partition(" ")
        url = url.strip()
        if method.upper() not in METHODS or not url.lower().startswith(("http://", "https://")):
            check.error(
                spec["request"],
                f"expected 'METHOD URL' such as 'GET https://shop.example/', got {request!r}",
            )
            continue
        headers: list[tuple[str, str]] = []
        if "headers" in spec:
            given = spec["headers"].value
            if not isinstance(given, dict):
                check.error(spec["headers"], "expected a mapping of header names to values")
                given = {}
            for name, value in given.items():
                text = check.scalar(value, str)
                if text is not None:
                    headers.append((name, text))
        body = check.scalar(spec["body"], str) if "body" in spec else None
        expect = _read_expect(spec["expect"], check)
        if expect is not None:
            yield Example(check.file, item.line, method.upper(), url, tuple(headers), body, expect)


def _read_expect(at: Located, check: Checker) -> dict[str, Any] | None:
    spec = check.mapping(at, EXPECT_KEYS)
    if spec is None:
        return None
    expect: dict[str, Any] = {}
    if "action" in spec:
        expect["action"] = check.choice(spec["action"], ("block", "pass"))
    if "status" in spec:
        expect["status"] = check.integer(spec["status"], 100)
    for key in ("strips", "replaces", "findings"):
        if key in spec:
            values = []
            for entry in check.items(spec[key]):
                if isinstance(entry.value, str) and entry.value:
                    values.append(entry.value)
                else:
                    check.error(entry, f"expected text, got {entry.value!r}")
            if key == "findings":
                for value in values:
                    if value not in CATEGORIES:
                        check.error(spec[key], f"unknown category {value!r}")
            expect[key] = values
    return expect
