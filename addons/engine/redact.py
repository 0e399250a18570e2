"""Redaction: what a site's policy does to one request, and the request as it would leave.

Pure: a `PlainRequest` and its findings in, an `Outcome` out (actions, each naming its rule's
file:line, plus the edited URL, headers and body). The proxy applies the outcome in enforce mode
and only logs it in observe mode; `policy explain` and `policy test` print and check it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

from shopguard.engine import decode
from shopguard.engine.extract import Multipart, PlainRequest, looks_like_form, read_multipart
from shopguard.engine.fakes import fake
from shopguard.engine.findings import Finding
from shopguard.engine.policy import NameIndex, NameRule, Policy

_DOCUMENTS = frozenset({"document", "iframe", "frame", "embed", "object"})
_ENCODE_SAFE = "-_.!~*'()"  # what JavaScript's encodeURIComponent leaves alone
_STRENGTH = {"log": 0, "replace": 1, "strip": 2, "block": 3}
_HASHED = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")


@dataclass
class Action:
    """One thing the policy does (or, in observe mode, would do) to a request."""

    action: str  # block | strip | replace | resign
    target: str  # "request", or a location like the findings': query:spm, cookie:cna, body:$.ua
    rule: str  # file:line of the rule; "" for what shopguard does by itself (re-signing)
    applied: bool = True
    category: str | None = None
    status: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"action": self.action, "target": self.target, "rule": self.rule}
        data["applied"] = self.applied
        for name in ("category", "status", "reason"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        return data


@dataclass
class Outcome:
    actions: list[Action] = field(default_factory=list)
    block_status: int | None = None  # answered locally with this status (enforce)
    url: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None  # the decoded body when it changed; None: as it was
    changed: bool = False
    url_changed: bool = False


def block_status(headers: Sequence[tuple[str, str]]) -> int:
    """403 with a page for documents, 204 for beacons, scripts, images and the rest."""
    values = {k.lower(): v for k, v in headers}
    dest = values.get("sec-fetch-dest", "").strip().lower()
    if dest:
        return 403 if dest in _DOCUMENTS else 204
    return 403 if "text/html" in values.get("accept", "").lower() else 204


def tracker_block(
    policy: Policy, host: str, path: str, headers: Sequence[tuple[str, str]], enforce: bool
) -> Action | None:
    """The block action for a tracker host or URL, decided from the request line alone."""
    rule = policy.blocks.find(host, path)
    if rule is None or any(a.everything for a in policy.allowances(host, path)):
        return None
    status = block_status(headers)
    return Action("block", "request", rule.where, enforce, status=status)


def uninspected_block(
    policy: Policy, headers: Sequence[tuple[str, str]], enforce: bool, reason: str
) -> Action | None:
    """The block of a request shopguard could not read, when the site says `on_uninspected:
    block`."""
    if policy.on_uninspected != "block":
        return None
    status = block_status(headers)
    return Action(
        "block", "request", policy.on_uninspected_rule, enforce, status=status, reason=reason
    )


def redact_message(
    policy: Policy,
    url: str,
    content: bytes,
    host: str,
    findings: Iterable[Finding],
    *,
    site: str,
    secret: bytes,
    enforce: bool,
    region: str = "CN",
) -> Outcome:
    """Apply `policy`'s field rules to a WebSocket message the client sends on the connection
    opened by `url`: a JSON message is edited like a JSON body (its `ws:$…` fields), anything
    else cannot be. `outcome.body` is the edited message; a `block` drops it."""
    try:
        split = urlsplit(url)
        where = f"{split.scheme}://{split.netloc}{split.path}"  # (its query was sent already)
    except ValueError:
        return Outcome(url=url)
    as_body = [
        replace(f, location="body" + f.location[2:]) if f.location.startswith("ws:$") else f
        for f in findings
    ]
    message = PlainRequest("POST", where, [("content-type", "application/json")], content)
    outcome = redact(
        policy, message, host, as_body, site=site, secret=secret, enforce=enforce, region=region
    )
    for action in outcome.actions:
        if action.target.startswith("body:$"):
            action.target = "ws" + action.target[4:]
        elif action.target == "request":
            action.target = "message"
    return outcome


def redact(
    policy: Policy,
    request: PlainRequest,
    host: str,
    findings: Iterable[Finding],
    *,
    site: str,
    secret: bytes,
    enforce: bool,
    inspection: str = "full",
    region: str = "CN",
) -> Outcome:
    """Apply `policy` to `request` (sent to `host`, carrying `findings`)."""
    outcome = Outcome(url=request.url, headers=list(request.headers))
    try:
        split = urlsplit(request.url)
    except ValueError:
        return outcome  # a URL Python cannot split: nothing can be edited in it
    path = split.path + (f"?{split.query}" if split.query else "")
    allowances = policy.allowances(host, path)
    if any(a.everything for a in allowances):
        return outcome
    allowed_categories = frozenset().union(*(a.fields or () for a in allowances))
    kept_names = frozenset().union(*(a.keep or () for a in allowances))
    kept = kept_names | {k.lower() for k in kept_names}  # header names ignore case

    # tracker blocks are decided earlier, from the request line (tracker_block)
    block = None
    if inspection != "full":
        reason = f"the request could not be fully inspected ({inspection})"
        block = uninspected_block(policy, request.headers, enforce, reason)
    # what to do with each personal field: the strongest action among its findings
    wanted: dict[str, tuple[str, Finding, str]] = {}
    for finding in findings:
        if finding.category in allowed_categories or _name_of(finding.location) in kept:
            continue
        rule = policy.field_rule(finding.category, host)
        if rule is None or rule.action == "log":
            continue
        if rule.action == "block" and block is None:
            block = Action(
                "block",
                "request",
                rule.where,
                enforce,
                category=finding.category,
                status=block_status(request.headers),
                reason=f"carries {finding.category} ({finding.location})",
            )
        held = wanted.get(finding.location)
        if held is None or _STRENGTH[rule.action] > _STRENGTH[held[0]]:
            wanted[finding.location] = (rule.action, finding, rule.where)
    if block is not None:
        outcome.actions.append(block)
        outcome.block_status = block.status if enforce else None
        return outcome

    editor = _Editor(request, split)
    for kind, rules in (
        ("query", policy.strip_rules("params", host)),
        ("fragment", policy.strip_rules("params", host)),
        ("cookie", policy.strip_rules("cookies", host)),
        ("header", policy.strip_rules("headers", host)),
    ):
        for name, strip_rule in editor.names(kind, rules, kept):
            target = f"{kind}:{name}"
            if editor.strip(target):
                outcome.actions.append(Action("strip", target, strip_rule.where, enforce))
    for target, strip_rule in editor.body_fields(policy.strip_rules("fields", host), kept):
        if editor.strip(target):
            outcome.actions.append(Action("strip", target, strip_rule.where, enforce))
    stripped = {a.target for a in outcome.actions}
    for location, (action, finding, where) in wanted.items():
        if location in stripped:
            continue  # a tracker rule removed it already
        done = Action(action, location, where, enforce, category=finding.category)
        if action == "strip":
            problem = None if editor.strip(location) else editor.problem or "cannot edit it"
        else:
            problem = editor.replace(location, finding, site, secret, region)
        if problem:
            done.applied, done.reason = False, problem
        outcome.actions.append(done)
    _resign(editor, outcome, enforce)
    outcome.changed = editor.changed
    if editor.changed:
        outcome.url, outcome.headers, outcome.body = editor.result()
        outcome.url_changed = outcome.url != request.url
    return outcome


def _name_of(location: str) -> str:
    """The innermost name in a location: `cookie:cna` -> cna, `body:$.a.umid` -> umid,
    `query:data.$.items[0]` -> items."""
    rest = location.partition(":")[2]
    if ".$" not in rest and not rest.startswith("$"):
        return rest
    path = _INDEXES.sub("", rest.rsplit("$", 1)[1])
    return path.rsplit(".", 1)[-1]


_INDEXES = re.compile(r"(?:\[\d+\])+$")


# -- signed mtop calls ---------------------------------------------------------------------------


def mtop_sign(token: str, t: str, app_key: str, data: str) -> str:
    """The mtop gateway's signature (public client code): md5 of `token&t&appKey&data`."""
    return hashlib.md5(f"{token}&{t}&{app_key}&{data}".encode()).hexdigest()


def _resign(editor: _Editor, outcome: Outcome, enforce: bool) -> None:
    """Edits inside a signed mtop call's `data` need a new signature, or must be undone."""
    editor.write_back()
    query = editor.query
    sign, t, app_key = query.get("sign"), query.get("t"), query.get("appKey")
    if sign is None or t is None or app_key is None or "/h5/" not in editor.path:
        return
    body_read = "_body" in editor.__dict__  # an unread body was not edited
    where = (
        "query" if "data" in query else "body.form" if body_read and "data" in editor.form else None
    )
    if where is None:
        return
    pairs = query if where == "query" else editor.form
    data, original = pairs.get("data"), pairs.original("data")
    if data == original or data is None or original is None:
        return
    token = editor.cookies.get("_m_h5_tk")
    token = token.split("_", 1)[0] if token else ""
    if not token:
        pairs.restore("data")  # leave the call as it was, and say why
        editor.nested.pop((where, "data"), None)
        for action in outcome.actions:
            if action.target.startswith((f"{where}:data.", f"{where}:data")):
                action.applied = False
                action.reason = "a signed mtop call without the _m_h5_tk token cannot be re-signed"
        return
    query.set("sign", mtop_sign(token, t, app_key, data))
    outcome.actions.append(Action("resign", "query:sign", "", enforce, reason="data was edited"))


# -- editing -------------------------------------------------------------------------------------


class _Fields:
    """What query strings, forms and multipart bodies share: named items (`item[1]`, None for
    an item that is not a field), read and set one by one, some of which may be removed."""

    def __init__(self) -> None:
        self.items: list[list[Any]] = []
        self.removed = False

    def value_of(self, item: list[Any]) -> str:
        raise NotImplementedError

    def set_item(self, item: list[Any], value: str) -> None:
        raise NotImplementedError

    def __contains__(self, name: str) -> bool:
        return any(item[1] == name for item in self.items)

    def names(self) -> list[str]:
        return [item[1] for item in self.items if item[1] is not None]

    def get(self, name: str) -> str | None:
        return next((self.value_of(item) for item in self.items if item[1] == name), None)

    def all(self, name: str) -> list[str]:
        """Every value sent under `name` (a field may be sent more than once)."""
        return [self.value_of(item) for item in self.items if item[1] == name]

    def set(self, name: str, value: str) -> bool:
        matching = [item for item in self.items if item[1] == name]
        for item in matching:
            self.set_item(item, value)
        return bool(matching)

    def set_each(self, name: str, values: list[str | None]) -> None:
        """Set the values sent under `name` one by one; None leaves one as it came."""
        matching = [item for item in self.items if item[1] == name]
        for item, value in zip(matching, values, strict=True):
            if value is not None:
                self.set_item(item, value)

    def remove(self, name: str) -> bool:
        before = len(self.items)
        self.items = [item for item in self.items if item[1] != name]
        self.removed |= len(self.items) != before
        return len(self.items) != before


class _Pairs(_Fields):
    """`a=1&b=2` with its raw form kept, so that untouched pairs leave exactly as they came.

    Values are decoded only when asked for: most requests only need their names.
    """

    def __init__(self, text: str, plus: bool) -> None:
        super().__init__()
        self.plus = plus
        for raw in text.split("&") if text else []:  # [raw pair, name, value, edited]
            name = raw.partition("=")[0]
            self.items.append([raw, decode.unquote(name, plus=True), None, False])

    @property
    def changed(self) -> bool:
        return self.removed or any(item[3] for item in self.items)

    def value_of(self, item: list[Any]) -> str:
        if item[2] is None:
            item[2] = decode.unquote(item[0].partition("=")[2], plus=self.plus)
        return str(item[2])

    def set_item(self, item: list[Any], value: str) -> None:
        item[2], item[3] = value, True

    def original(self, name: str) -> str | None:
        raw = next((item[0] for item in self.items if item[1] == name), None)
        return decode.unquote(raw.partition("=")[2], plus=self.plus) if raw is not None else None

    def restore(self, name: str) -> None:
        """Put `name` back as it came (raw), undoing edits."""
        for item in self.items:
            if item[1] == name:
                item[2], item[3] = None, False

    def text(self) -> str:
        return "&".join(
            f"{quote(i[1], safe=_ENCODE_SAFE)}={quote(i[2], safe=_ENCODE_SAFE)}" if i[3] else i[0]
            for i in self.items
        )

    def encoded(self) -> bytes:
        return self.text().encode()


class _Parts(_Fields):
    """A multipart/form-data body as form fields (what `new FormData(form)` sends): its text
    parts by name, edited in place; file parts, and edited parts' headers, leave as they came.
    """

    def __init__(self, body: Multipart) -> None:
        super().__init__()
        self.body = body
        for part in body.parts:  # [part, field name or None, edited value or None]
            name, filename = part.disposition
            text = decode.text_of(part.content) if filename is None else None
            self.items.append([part, name if text is not None else None, None])

    @property
    def changed(self) -> bool:
        return self.removed or any(item[2] is not None for item in self.items)

    def value_of(self, item: list[Any]) -> str:
        return str(item[2]) if item[2] is not None else decode.text_of(item[0].content) or ""

    def set_item(self, item: list[Any], value: str) -> None:
        item[2] = value

    def original(self, name: str) -> str | None:
        return next((decode.text_of(i[0].content) or "" for i in self.items if i[1] == name), None)

    def restore(self, name: str) -> None:
        for item in self.items:
            if item[1] == name:
                item[2] = None

    def encoded(self) -> bytes:
        return self.body.encoded(
            part if edited is None else part._replace(content=str(edited).encode())
            for part, _, edited in self.items
        )


class _Editor:
    """The parts of a request that policies edit, each parsed only when a rule needs it.

    Edits are made on parsed structures and written back once (`result`), so that several
    edits of one JSON document see the positions as they came (a removed array item leaves a
    gap until then), and whatever no rule touched leaves as it came.
    """

    def __init__(self, request: PlainRequest, split: SplitResult) -> None:
        self.request = request
        self.split = split
        self.path = split.path
        self.query = _Pairs(split.query, plus=True)
        self.fragment = _Pairs(split.fragment, plus=False)
        self.headers = [list(h) for h in request.headers]
        self.problem = ""
        self.body_changed = False
        self.headers_changed = False
        self.path_changed = False
        self.nested: dict[tuple[str, str], Any] = {}  # JSON inside a query or form value
        self.body_codec = ("utf-8", b"")  # a JSON body's encoding and byte-order mark
        self.body_frame = ("", "")  # and what surrounds the document (whitespace, \x1e)

    def header(self, name: str) -> str | None:
        return next((h[1] for h in self.headers if h[0].lower() == name), None)

    @cached_property
    def cookies(self) -> _Cookies:
        return _Cookies(self.headers)

    @cached_property
    def _body(self) -> tuple[_Pairs | _Parts, Any]:
        """The body as form pairs or parsed JSON (read only when a rule needs it)."""
        empty = _Pairs("", plus=True)
        data = self.request.body
        if not data or self.request.body_truncated:
            return empty, None
        for layer in reversed(
            [e for e in (self.request.header("content-encoding") or "").split(",") if e.strip()]
        ):
            decoded = decode.decompress(data, layer, 64 * 1024 * 1024)
            if decoded is None or decoded[1]:
                return empty, None
            data = decoded[0]
        content_type = (self.request.header("content-type") or "").lower()
        if content_type.startswith("multipart/"):
            multipart = read_multipart(data, self.request.header("content-type") or "")
            return (_Parts(multipart) if multipart is not None else empty), None
        codec, mark = decode.json_encoding(data)  # UTF-8 (a mark allowed), UTF-16, UTF-32
        text = decode.json_text(data)
        if text is not None and ("json" in content_type or text.strip()[:1] in "{["):
            stripped = text.strip()  # (also what JSON does not allow around it: SignalR's \x1e)
            parsed = _json_of(stripped)
            if parsed is not None:  # written back in its encoding, with what surrounds it
                start = text.index(stripped)
                self.body_codec = codec, mark
                self.body_frame = text[:start], text[start + len(stripped) :]
                return empty, parsed
        text = decode.text_of(data)
        if text is None:
            return empty, None
        stripped = text.strip()
        if "x-www-form-urlencoded" in content_type or looks_like_form(stripped):
            return _Pairs(stripped, plus=True), None  # also sendBeacon's text/plain forms
        return empty, None

    @property
    def form(self) -> _Pairs | _Parts:
        return self._body[0]

    @property
    def json(self) -> Any:
        return self._body[1]

    def pairs(self, kind: str) -> _Pairs | _Parts:
        return {"query": self.query, "fragment": self.fragment, "body.form": self.form}[kind]

    def nested_json(self, kind: str, name: str) -> Any:
        """The JSON inside the value `name` of a query or form (mtop's `data`), parsed once."""
        key = (kind, name)
        if key not in self.nested:
            self.nested[key] = _json_of(self.pairs(kind).get(name))
        return self.nested[key]

    @property
    def changed(self) -> bool:
        self.write_back()
        built = self.__dict__
        return (
            self.path_changed
            or self.query.changed
            or self.fragment.changed
            or ("cookies" in built and self.cookies.changed)
            or self.headers_changed
            or self.body_changed
            or ("_body" in built and self.form.changed)
        )

    def write_back(self) -> None:
        """Put edited JSON back into its query or form value."""
        for (kind, name), document in self.nested.items():
            if isinstance(document, _Edited):
                self.pairs(kind).set(name, _dumps(document.value))

    # -- what the strip rules name --------------------------------------------------------------
    def names(
        self, kind: str, rules: NameIndex, kept: frozenset[str]
    ) -> list[tuple[str, NameRule]]:
        """(name, rule) for each parameter, cookie or header a rule strips here."""
        if not rules:
            return []
        if kind == "query":
            present = self.query.names()
        elif kind == "fragment":
            present = self.fragment.names()
        elif kind == "cookie":
            present = self.cookies.names()
        else:
            present = [h[0].lower() for h in self.headers]
        found: dict[str, NameRule] = {}
        for name in present:
            if name not in kept and name not in found and (rule := rules.find(name)):
                found[name] = rule
        return list(found.items())

    def body_fields(self, rules: NameIndex, kept: frozenset[str]) -> list[tuple[str, NameRule]]:
        """(location, rule) for each body field: form and JSON keys at any depth, and keys of
        JSON inside a form or query value (mtop's `data=`); never a query parameter itself."""
        if not rules:
            return []

        def rule_for(name: str) -> NameRule | None:
            return None if name in kept else rules.find(name)

        found: list[tuple[str, NameRule]] = []
        for kind in ("query", "body.form"):
            pairs = self.pairs(kind)
            for name in pairs.names():
                rule = rule_for(name) if kind == "body.form" else None
                if rule is not None:
                    found.append((f"{kind}:{name}", rule))
                    continue
                nested = self.nested_json(kind, name)
                if nested is not None:
                    found.extend(_json_keys(_plain(nested), _json_base(kind, name), rule_for))
        if self.json is not None:
            found.extend(_json_keys(self.json, "body:$", rule_for))
        return found

    # -- edits ----------------------------------------------------------------------------------
    def strip(self, location: str) -> bool:
        self.problem = ""
        return self._edit(location, None)

    def replace(
        self, location: str, finding: Finding, site: str, secret: bytes, region: str
    ) -> str | None:
        """Replace the value at `location` with a stand-in; the reason when it cannot."""
        self.problem = ""
        current = self.value_at(location)
        if current is None:
            return self.problem or f"nothing to replace at {location}"
        if finding.transform and any(
            layer != "urlencode" and not layer.startswith(_HASHED)
            for layer in finding.transform.split(">")
        ):
            return f"the value is encoded ({finding.transform}); it can be stripped, not replaced"
        kind, _, name = location.partition(":")
        sent = self.pairs(kind).all(name) if kind in ("query", "fragment", "body.form") else []
        if len(sent) > 1:  # the field is sent more than once: a stand-in for each of its values
            values = [_stand_in(v, finding, site, secret, region) for v in sent]
            if not any(values):
                return f"no valid stand-in for this {finding.category} value"
            self.pairs(kind).set_each(name, values)
            return None
        value = _stand_in(current, finding, site, secret, region)
        if value is None:
            return f"no valid stand-in for this {finding.category} value"
        if not self._edit(location, value):
            return self.problem or f"cannot edit {location}"
        return None

    def value_at(self, location: str) -> str | None:
        kind, _, rest = location.partition(":")
        name, dot, inner = _field_and_path(rest)
        if kind in ("query", "fragment", "body.form"):
            pairs = self.pairs(kind)
            if not dot and name not in pairs and (inside := _inside_address(name, pairs.get)):
                outer, part, param = inside
                return _address_param(pairs.get(outer) or "", part, param)
            if not dot:
                return pairs.get(name)
            document = self.nested_json(kind, name)
            return _scalar(_json_get(_plain(document), "$" + inner))
        if kind == "body" and rest.startswith("$"):
            return _scalar(_json_get(self.json, rest))
        if kind == "cookie":
            return self.cookies.get(rest)
        if kind == "header" and (inside := _inside_address(rest, self.header)):
            outer, part, param = inside
            return _address_param(self.header(outer) or "", part, param)
        if kind == "header":
            return self.header(rest)
        if kind == "path" and rest.isdigit():
            segments = [s for s in self.path.split("/") if s]
            index = int(rest)
            return decode.unquote(segments[index]) if index < len(segments) else None
        self.problem = f"a value in {kind} cannot be edited in place"
        return None

    def _edit(self, location: str, value: str | None) -> bool:
        """Remove (value None) or set the value at `location`."""
        kind, _, rest = location.partition(":")
        name, dot, inner = _field_and_path(rest)
        if kind in ("query", "fragment", "body.form"):
            pairs = self.pairs(kind)
            if not dot and name not in pairs and (inside := _inside_address(name, pairs.get)):
                outer, part, param = inside  # a parameter of a URL inside this parameter
                changed = _address_edit(pairs.get(outer) or "", part, param, value)
                if changed is None:
                    self.problem = f"{location} is not in the request"
                    return False
                return pairs.set(outer, changed)
            if not dot:
                done = pairs.remove(name) if value is None else pairs.set(name, value)
                if not done:  # e.g. a binary multipart part
                    self.problem = f"{location} cannot be edited (not a query or form field)"
                return done
            document = self.nested_json(kind, name)
            if document is None or not _json_edit(_plain(document), "$" + inner, value):
                self.problem = f"{location} is not in the request"
                return False
            if not isinstance(document, _Edited):
                self.nested[(kind, name)] = _Edited(document)
            return True
        if kind == "body" and rest.startswith("$"):
            if self.json is None or not _json_edit(self.json, rest, value):
                self.problem = f"{location} is not in the request"
                return False
            self.body_changed = True
            return True
        if kind == "cookie":
            return self.cookies.remove(rest) if value is None else self.cookies.set(rest, value)
        if kind == "header" and (inside := _inside_address(rest, self.header)):
            outer, part, param = inside  # a parameter of the Referer's URL
            changed = _address_edit(self.header(outer) or "", part, param, value)
            if changed is None:
                self.problem = f"{location} is not in the request"
                return False
            for header in self.headers:
                if header[0].lower() == outer:
                    header[1] = changed
            self.headers_changed = True
            return True
        if kind == "header":
            before = len(self.headers)
            if value is None:
                self.headers = [h for h in self.headers if h[0].lower() != rest]
                self.headers_changed |= len(self.headers) != before
                return len(self.headers) != before
            for header in self.headers:
                if header[0].lower() == rest:
                    header[1] = value
                    self.headers_changed = True
            return self.headers_changed
        if kind == "path" and rest.isdigit() and value is not None:
            segments = self.path.split("/")
            nonempty = [i for i, s in enumerate(segments) if s]
            index = int(rest)
            if index >= len(nonempty):
                return False
            segments[nonempty[index]] = quote(value, safe=_ENCODE_SAFE)
            self.path = "/".join(segments)
            self.path_changed = True
            return True
        self.problem = (
            "a path segment can be replaced, not stripped"
            if kind == "path"
            else f"a value in {kind} cannot be edited in place"
        )
        return False

    def result(self) -> tuple[str, list[tuple[str, str]], bytes | None]:
        self.write_back()
        split = self.split
        if self.path_changed or self.query.changed or self.fragment.changed:
            query, fragment = self.query.text(), self.fragment.text()
            url = f"{split.scheme}://{split.netloc}{self.path}"
            url += f"?{query}" if query else ""
            url += f"#{fragment}" if fragment else ""
        else:
            url = self.request.url  # as it came, to the byte
        headers = [(k, v) for k, v in self.headers]
        if "cookies" in self.__dict__ and self.cookies.changed:
            headers = self.cookies.apply(headers)
        body: bytes | None = None
        if "_body" not in self.__dict__:
            pass
        elif self.body_changed and self.json is not None:
            (codec, mark), (before, after) = self.body_codec, self.body_frame
            body = mark + f"{before}{_dumps(self.json)}{after}".encode(codec)
        elif self.form.changed:
            body = self.form.encoded()
        return url, headers, body


def _stand_in(current: str, finding: Finding, site: str, secret: bytes, region: str) -> str | None:
    """A stand-in for a value as it was found (percent-encoded, or a digest: of its shape);
    None when the value has none (not a valid one of its category)."""
    layers = finding.transform.split(">") if finding.transform else []
    if layers and layers[-1].startswith(_HASHED):  # a digest: another digest of its shape
        return fake("device_id", current, site=site, secret=secret, region=region)
    for _ in layers:  # percent-encoded again inside the value
        current = decode.unquote(current)
    value = fake(finding.category, current, site=site, secret=secret, region=region)
    for _ in layers:
        value = quote(value, safe="") if value is not None else None
    return value


def _json_base(kind: str, name: str) -> str:
    """Where JSON inside the field `name` is, as the extraction names it: `body.form:data.$`,
    or `body.form:$` for a field (a multipart part) without a name."""
    return f"{kind}:{name}.$" if name else f"{kind}:$"


def _field_and_path(rest: str) -> tuple[str, str, str]:
    """`data.$.a` -> ("data", ".$", ".a"); `$.a`, JSON in a field without a name -> ("", ".$",
    ".a"); `mobile` -> ("mobile", "", "")."""
    if rest.startswith("$"):
        return "", ".$", rest[1:]
    return rest.partition(".$")


def _inside_address(name: str, lookup: Callable[[str], str | None]) -> tuple[str, str, str] | None:
    """For `r.mobile` or `referer#k`: (`r`, `.` or `#`, `mobile`) when `r` holds a URL."""
    for index, char in enumerate(name):
        if char in ".#":
            outer = name[:index]
            value = lookup(outer)
            if value is not None and value[:8].lower().startswith(("https://", "http://")):
                return outer, char, name[index + 1 :]
    return None


def _address_param(url: str, part: str, param: str) -> str | None:
    try:
        split = urlsplit(url)
    except ValueError:
        return None
    return _Pairs(split.query if part == "." else split.fragment, plus=part == ".").get(param)


def _address_edit(url: str, part: str, param: str, value: str | None) -> str | None:
    """`url` with its query (`.`) or fragment (`#`) parameter removed or set; None if absent."""
    try:
        split = urlsplit(url)
    except ValueError:
        return None
    pairs = _Pairs(split.query if part == "." else split.fragment, plus=part == ".")
    if not (pairs.remove(param) if value is None else pairs.set(param, value)):
        return None
    text = pairs.text()
    edited = split._replace(query=text) if part == "." else split._replace(fragment=text)
    return urlunsplit(edited)


class _Cookies:
    """The pairs of every Cookie header (HTTP/2 clients send one per cookie), each edited in
    place; parts without `=` stay as they were."""

    def __init__(self, headers: list[list[str]]) -> None:
        self.parts: list[list[Any]] = []  # [header index, name or None, value or raw part]
        for index, (name, value) in enumerate(headers):
            if name.lower() != "cookie":
                continue
            for part in value.split(";"):
                key, eq, content = part.strip().partition("=")
                if eq and key:
                    self.parts.append([index, key, content])
                elif part.strip():
                    self.parts.append([index, None, part.strip()])
        self.changed = False

    def names(self) -> list[str]:
        return [p[1] for p in self.parts if p[1] is not None]

    def get(self, name: str) -> str | None:
        return next((str(p[2]) for p in self.parts if p[1] == name), None)

    def set(self, name: str, value: str) -> bool:
        found = False
        for part in self.parts:
            if part[1] == name:
                part[2], found = value, True
        self.changed |= found
        return found

    def remove(self, name: str) -> bool:
        before = len(self.parts)
        self.parts = [p for p in self.parts if p[1] != name]
        self.changed |= before != len(self.parts)
        return before != len(self.parts)

    def apply(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The headers with each Cookie header rewritten from its remaining parts (an emptied
        Cookie header is dropped)."""
        out = []
        for index, (name, value) in enumerate(headers):
            if name.lower() == "cookie":
                kept = [
                    f"{p[1]}={p[2]}" if p[1] is not None else str(p[2])
                    for p in self.parts
                    if p[0] == index
                ]
                if not kept:
                    continue
                value = "; ".join(kept)
            out.append((name, value))
        return out


class _Edited:
    """A nested JSON document that an edit changed (written back into its value once)."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _plain(document: Any) -> Any:
    return document.value if isinstance(document, _Edited) else document


# -- JSON paths like the findings' locations: $.receiver.mobile, $.items[0].skuId ------------------


_REMOVED = object()  # a removed array item, until the document is written back


def _json_of(text: str | None) -> Any:
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


class _Embedded:
    """JSON written inside a JSON string (mtop's `params`, `exParams`), parsed to be edited;
    written back as a string."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _without_removed(value: Any) -> Any:
    if isinstance(value, _Embedded):
        return _dumps(value.value)
    if isinstance(value, dict):
        return {k: _without_removed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_removed(v) for v in value if v is not _REMOVED]
    return value


def _dumps(value: Any) -> str:
    """Compact JSON as clients send it; \\u escapes where the text holds lone surrogates."""
    clean = _without_removed(value)
    text = json.dumps(clean, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(clean, separators=(",", ":"))
    return text


def _scalar(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value) if isinstance(value, float) else str(value)
    return None


def _steps(node: Any, path: str) -> list[tuple[Any, Any]] | None:
    """(container, key) pairs along `path` (`$.a.b[0]`); keys with dots are resolved greedily."""
    if not path.startswith("$"):
        return None
    rest, steps = path[1:], list[tuple[Any, Any]]()
    while rest:
        if rest.startswith(".$") and steps and isinstance(node, (str, _Embedded)):
            if isinstance(node, str):  # JSON inside this string value: parse it once
                parsed = _json_of(node)
                if parsed is None:
                    return None
                container, key = steps[-1]
                node = container[key] = _Embedded(parsed)
            node, rest = node.value, rest[2:]
        elif rest.startswith("[") and isinstance(node, list):
            end = rest.find("]")
            if end < 0 or not rest[1:end].isdigit() or int(rest[1:end]) >= len(node):
                return None
            index = int(rest[1:end])
            if node[index] is _REMOVED:
                return None
            steps.append((node, index))
            node, rest = node[index], rest[end + 1 :]
        elif rest.startswith(".") and isinstance(node, dict):
            rest = rest[1:]
            keys = [
                k
                for k in node
                if rest.startswith(k) and rest[len(k) : len(k) + 1] in ("", ".", "[")
            ]
            if not keys:
                return None
            key = max(keys, key=len)
            steps.append((node, key))
            node, rest = node[key], rest[len(key) :]
        else:
            return None
    return steps


def _json_get(root: Any, path: str) -> Any:
    steps = _steps(root, path)
    if not steps:
        return None
    container, key = steps[-1]
    return container[key]


def _json_edit(root: Any, path: str, value: str | None) -> bool:
    steps = _steps(root, path)
    if not steps:
        return False
    container, key = steps[-1]
    if value is None and isinstance(container, list):
        container[key] = _REMOVED  # later paths into this array keep their positions
    elif value is None:
        del container[key]
    else:
        old = container[key]
        container[key] = (
            value if isinstance(old, str) or not value.lstrip("-").isdigit() else int(value)
        )
    return True


def _json_keys(root: Any, base: str, rule_for: Any) -> list[tuple[str, NameRule]]:
    """(location, rule) of every key at any depth whose name a strip rule names."""
    found: list[tuple[str, NameRule]] = []
    stack: list[tuple[Any, str, int]] = [(root, base, 0)]
    while stack and len(found) < 1000:
        node, location, depth = stack.pop()
        if depth > 64:
            continue
        if isinstance(node, dict):
            for key, child in node.items():
                rule = rule_for(str(key))
                here = f"{location}.{key}"
                if rule is not None:
                    found.append((here, rule))
                elif isinstance(child, (dict, list)):
                    stack.append((child, here, depth + 1))
                elif isinstance(child, str) and child[:1] in ("{", "["):
                    inner = _json_of(child)  # JSON inside a string value
                    if inner is not None:
                        stack.append((inner, f"{here}.$", depth + 1))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                if isinstance(child, (dict, list)):
                    stack.append((child, f"{location}[{index}]", depth + 1))
    return found
