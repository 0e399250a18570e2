"""ClearURLs providers (its `data.min.json`) that concern one site, as an Imported."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shopguard.engine.imported import (
    Dom,
    Imported,
    ImportFailure,
    ImportScope,
    Unsupported,
    scope_for,
)
from shopguard.engine.settings import Site

_CU_PREFIX = re.compile(r"\^?https\?:(?:\\/|/){2}")
_CU_SUBDOMAINS = re.compile(r"\((?:\?:)?\[[a-z0-9\\.-]+\][*+]?(?:\\\.)?\)(?:[*+?]\??)?")
_CU_TLD = re.compile(r"\((?:\?:)?\\\.\[a-z\]\{2,\}\)(?:\{1,\}|\+)")
_ANY_TLD, _END = "\x00", "\x01"
_PLAIN_RULE = re.compile(r"^[A-Za-z0-9_-]+$")


class _Unparsed(Exception):
    pass


def _alternatives(text: str, i: int = 0, depth: int = 0) -> tuple[list[str], int]:
    """The strings a small regex (literals, escapes, groups with `|` and `?`, `[ab]`, the TLD
    idiom) stands for; raises _Unparsed at anything else."""
    branches: list[str] = []
    current = [""]
    while i < len(text):
        char = text[i]
        if char == ")":
            if depth == 0:
                raise _Unparsed
            break
        if char == "|":
            branches += current
            current, i = [""], i + 1
            continue
        tld = _CU_TLD.match(text, i)
        group = False
        if tld:
            pieces, i = [_ANY_TLD], tld.end()
        elif char == "(":
            if text.startswith("(?", i) and not text.startswith("(?:", i):
                raise _Unparsed
            pieces, i = _alternatives(text, i + (3 if text.startswith("(?:", i) else 1), depth + 1)
            if i >= len(text) or text[i] != ")":
                raise _Unparsed
            i, group = i + 1, True
            if text.startswith("?", i):
                pieces, i = [*pieces, ""], i + 1
        elif char == "\\":
            if i + 1 >= len(text) or text[i + 1] not in "./-?:_&=":
                raise _Unparsed
            pieces, i = [text[i + 1]], i + 2
        elif char == "[":
            end = text.find("]", i)
            if end < 0 or not re.fullmatch(r"[a-z0-9]{1,8}", text[i + 1 : end]):
                raise _Unparsed
            pieces, i = list(text[i + 1 : end]), end + 1
        elif char == "$":
            pieces, i = [_END], i + 1
        elif char.isascii() and (char.isalnum() or char in "-_./"):
            pieces, i = [char], i + 1
        else:
            raise _Unparsed
        if i < len(text) and (text[i] in "*+{" or (text[i] == "?" and not group)):
            raise _Unparsed
        current = [a + p for a in current for p in pieces]
        if len(current) > 256:
            raise _Unparsed
    branches += current
    return branches, i


@dataclass(frozen=True)
class _ProviderUrl:
    """What a provider's urlPattern covers: hosts, each with a path prefix glob or None."""

    targets: tuple[tuple[Dom, str | None], ...] = ()
    complex_path: bool = False  # a path shopguard cannot express
    generic: bool = False  # every URL (`globalRules`)


def _provider_url(pattern: str) -> _ProviderUrl | None:
    """The hosts and paths of a ClearURLs urlPattern; None when it cannot be read."""
    if pattern.strip() in (".*", "^.*", ""):
        return _ProviderUrl(generic=True)
    prefix = _CU_PREFIX.match(pattern)
    if prefix is None:
        return None
    rest = pattern[prefix.end() :]
    sub = _CU_SUBDOMAINS.match(rest)
    if sub:
        rest = rest[sub.end() :]
    cut = _top_level_slash(rest)
    host_part, path_part = rest[:cut], rest[cut:]
    try:
        hosts = _alternatives(host_part)[0]
    except _Unparsed:
        return None
    paths_: list[str | None] = [None]
    complex_path = False
    if path_part:
        try:
            paths_ = [_path_prefix(p) for p in _alternatives(path_part)[0]]
        except _Unparsed:
            complex_path = True
    targets: list[tuple[Dom, str | None]] = []
    paths_ = [None if p == "/*" else p for p in paths_]
    for host in hosts:
        host = host.lower().rstrip(_END)
        any_tld = host.endswith(_ANY_TLD)
        dom = Dom.named(host.rstrip(_ANY_TLD), sub is not None, any_tld)
        if dom is None:
            return None
        targets += [(dom, path) for path in paths_]
    return _ProviderUrl(tuple(targets), complex_path)


def _top_level_slash(text: str) -> int:
    """Where the host part of a regex ends: its first `/` outside groups, else its end."""
    depth, i = 0, 0
    while i < len(text):
        char = text[i]
        if char == "\\" and text.startswith("\\/", i) and depth == 0:
            return i
        if char == "\\":
            i += 2
            continue
        if char == "/" and depth == 0:
            return i
        depth += {"(": 1, ")": -1}.get(char, 0)
        i += 1
    return len(text)


def _path_prefix(path: str) -> str:
    if _ANY_TLD in path or _END in path.rstrip(_END) or not path.startswith("/"):
        raise _Unparsed
    return path.rstrip(_END) if path.endswith(_END) else path + "*"


def _clearurls_rule(rule: str) -> str | None:
    """A ClearURLs rule as a strip_params entry: ClearURLs tests `^rule$` against each
    parameter name, ignoring case (`new RegExp("^"+rule+"$", "gi")`)."""
    if _PLAIN_RULE.match(rule):
        return rule
    regex = f"(?i)^(?:{rule})$"
    try:
        re.compile(regex)
    except re.error:
        return None
    return f"/{regex}/"


def read_providers(data: Any) -> dict[str, dict[str, Any]]:
    """The providers of a ClearURLs rules file, checked; ImportFailure names what is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("providers"), dict):
        raise ImportFailure('expected ClearURLs rules: {"providers": {NAME: {"urlPattern": …}}}')
    providers: dict[str, dict[str, Any]] = {}
    for name, spec in data["providers"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("urlPattern"), str):
            raise ImportFailure(f'provider "{name}": expected an object with a "urlPattern" text')
        for key in ("rules", "referralMarketing", "rawRules", "exceptions", "redirections"):
            value = spec.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ImportFailure(f'provider "{name}": "{key}" must be a list of texts')
        providers[str(name)] = spec
    return providers


def from_clearurls(data: Any, site: Site, source: str = "data.min.json") -> Imported:
    """The ClearURLs providers of `data` that concern `site`, as shopguard rules."""
    providers = read_providers(data)
    urls = {name: _provider_url(spec["urlPattern"]) for name, spec in providers.items()}
    doms = (dom for url in urls.values() if url for dom, _ in url.targets)
    scope, hosts = scope_for(site, doms, source)
    out = Imported("clearurls", source, hosts=hosts)
    for name, spec in providers.items():
        _provider(name, spec, urls[name], scope, out)
    return out


def _provider(
    name: str, spec: Mapping[str, Any], url: _ProviderUrl | None, scope: ImportScope, out: Imported
) -> None:
    where = f'provider "{name}"'
    pattern: str = spec["urlPattern"]
    if url is None:
        if scope.mentions(pattern) or _pattern_hits(pattern, scope):
            out.unsupported.append(Unsupported(where, pattern, "urlPattern too complex to convert"))
        else:
            out.skipped += 1
        return
    targets = [(glob, path) for dom, path in url.targets for glob in scope.globs_for(dom)]
    if url.generic or not targets:
        out.skipped += 1
        return
    note = f'ClearURLs provider "{name}"'
    names = [*spec.get("rules", []), *spec.get("referralMarketing", [])]
    limited = url.complex_path or any(path is not None for _, path in targets)
    if names and limited:
        out.unsupported.append(
            Unsupported(
                where,
                f"{pattern} rules: {', '.join(names)}",
                "its rules apply to some paths only; strip_params cannot be limited to a path",
            )
        )
    elif names:
        for rule in names:
            entry = _clearurls_rule(rule)
            if entry is None:
                out.unsupported.append(Unsupported(where, rule, "rule is not a valid regex here"))
                continue
            for glob, _ in targets:
                out.add_strip(glob, entry, note)
    if spec.get("completeProvider") is True:
        if url.complex_path:
            out.unsupported.append(
                Unsupported(where, pattern, "completeProvider with a path pattern too complex")
            )
        for glob, path in targets if not url.complex_path else []:
            out.add_pattern(f"{glob}{path or ''}", f"{note} (completeProvider)", where, pattern)
    for key, reason in (
        ("rawRules", "rawRules rewrite the URL text; shopguard only strips named parameters"),
        ("redirections", "redirections (unwrapping redirect URLs) are not supported"),
        ("exceptions", "exceptions are not supported: the rules above apply there too"),
    ):
        for item in spec.get(key, []):
            out.unsupported.append(Unsupported(where, f"{key}: {item}", reason))
    methods = spec.get("methods")
    if methods:
        out.unsupported.append(
            Unsupported(where, f"methods: {methods}", "rules limited to HTTP methods")
        )


def _pattern_hits(pattern: str, scope: ImportScope) -> bool:
    """Whether a regex shopguard cannot read matches the home page of one of the site's hosts."""
    try:
        regex = re.compile(pattern, re.IGNORECASE)
    except re.error:
        return False
    return any(
        regex.search(f"https://{prefix}{glob.domain}/")
        for glob in scope.globs
        for prefix in ("", "www.")
    )
