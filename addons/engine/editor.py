"""The request editor: removes or sets the value at a location, and writes the request back.

Each part of the request (query, fragment, path, headers, cookies, body) is parsed only when a
rule needs it. Edits are made on parsed structures and written back once (`result`), so that
several edits of one JSON document see the positions as they came (a removed array item leaves a
gap until then), and whatever no rule touched leaves as it came, to the byte.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

from shopguard.engine import composite, decode, jsonpath
from shopguard.engine import location as loc
from shopguard.engine.body import FORM, JSON, MULTIPART, Body, Multipart
from shopguard.engine.findings import Finding
from shopguard.engine.location import DOCUMENT, FRAGMENT, INDEX, NAME, PART, LocationError, Step
from shopguard.engine.policy import NameIndex, NameRule
from shopguard.engine.request import PlainRequest

ENCODE_SAFE = "-_.!~*'()"  # what JavaScript's encodeURIComponent leaves alone
PAIRS = ("query", "fragment", "body.form")


class Fields:
    """What query strings, forms and multipart bodies share: named items (`item[1]`, None for
    an item that is not a field), read and set one by one, some of which may be removed."""

    def __init__(self) -> None:
        self.items: list[list[Any]] = []
        self.removed = False

    def value_of(self, item: list[Any]) -> str:
        raise NotImplementedError

    def set_item(self, item: list[Any], value: str) -> None:
        raise NotImplementedError

    @property
    def changed(self) -> bool:
        raise NotImplementedError

    def original(self, name: str) -> str | None:
        raise NotImplementedError

    def restore(self, name: str) -> None:
        raise NotImplementedError

    def encoded(self) -> bytes:
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


class Pairs(Fields):
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
            f"{quote(i[1], safe=ENCODE_SAFE)}={quote(i[2], safe=ENCODE_SAFE)}" if i[3] else i[0]
            for i in self.items
        )

    def encoded(self) -> bytes:
        return self.text().encode()


class Parts(Fields):
    """A multipart/form-data body as form fields (what `new FormData(form)` sends): its text
    parts by name, edited in place; file parts, and edited parts' headers, leave as they came.
    """

    def __init__(self, body: Multipart) -> None:
        super().__init__()
        self.body = body
        for part in body.parts:  # [part, field name or None, edited value or None]
            text = part.text
            self.items.append([part, part.disposition[0] if text is not None else None, None])

    @property
    def changed(self) -> bool:
        return self.removed or any(item[2] is not None for item in self.items)

    def value_of(self, item: list[Any]) -> str:
        return str(item[2]) if item[2] is not None else item[0].text or ""

    def set_item(self, item: list[Any], value: str) -> None:
        item[2] = value

    def original(self, name: str) -> str | None:
        return next((i[0].text or "" for i in self.items if i[1] == name), None)

    def restore(self, name: str) -> None:
        for item in self.items:
            if item[1] == name:
                item[2] = None

    def encoded(self) -> bytes:
        return self.body.encoded(
            part if edited is None else part._replace(content=str(edited).encode())
            for part, _, edited in self.items
        )


class Cookies:
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


class Editor:
    """The parts of a request that policies edit, each parsed only when a rule needs it."""

    def __init__(self, request: PlainRequest, split: SplitResult, body: Body) -> None:
        self.request = request
        self.split = split
        self.body = body
        self.path = split.path
        self.query = Pairs(split.query, plus=True)
        self.fragment = Pairs(split.fragment, plus=False)
        self.headers = [list(h) for h in request.headers]
        self.problem = ""
        self.body_changed = False
        self.headers_changed = False
        self.path_changed = False
        self.nested: dict[tuple[str, str], Any] = {}  # JSON inside a query or form value

    def header(self, name: str) -> str | None:
        return next((h[1] for h in self.headers if h[0].lower() == name), None)

    @cached_property
    def cookies(self) -> Cookies:
        return Cookies(self.headers)

    @cached_property
    def form(self) -> Fields:
        """The body's form fields (urlencoded, text/plain or multipart); none for other bodies."""
        if self.body.kind == FORM:
            return Pairs(self.body.text, plus=True)
        if self.body.kind == MULTIPART and self.body.multipart is not None:
            return Parts(self.body.multipart)
        return Pairs("", plus=True)

    @cached_property
    def json(self) -> Any:
        """The body's JSON document, parsed strictly (None where it cannot be written back)."""
        return jsonpath.faithful(self.body.text) if self.body.kind == JSON else None

    @property
    def form_read(self) -> bool:
        return "form" in self.__dict__

    def pairs(self, kind: str) -> Fields:
        """The query's, the fragment's or the body's fields (the body is read only for these)."""
        if kind == "query":
            return self.query
        return self.fragment if kind == "fragment" else self.form

    def nested_json(self, kind: str, name: str) -> Any:
        """The JSON inside the value `name` of a query or form (mtop's `data`), parsed once."""
        key = (kind, name)
        if key not in self.nested:
            self.nested[key] = jsonpath.faithful(self.pairs(kind).get(name))
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
            or (self.form_read and self.form.changed)
        )

    def write_back(self) -> None:
        """Put edited JSON back into its query or form value."""
        for (kind, name), document in self.nested.items():
            if isinstance(document, _Edited):
                self.pairs(kind).set(name, jsonpath.dumps(document.value))

    # -- what the strip rules name --------------------------------------------------------------
    def names(
        self, kind: str, rules: NameIndex, kept: frozenset[str]
    ) -> list[tuple[str, NameRule]]:
        """(name, rule) for each parameter, cookie or header a rule strips here."""
        if not rules:
            return []
        if kind in ("query", "fragment"):
            present = self.pairs(kind).names()
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
                field = loc.top(kind, name)
                if rule is not None:
                    found.append((field, rule))
                    continue
                nested = self.nested_json(kind, name)
                if nested is not None:
                    found.extend(jsonpath.keys_named(_plain(nested), loc.document(field), rule_for))
        if self.json is not None:
            found.extend(jsonpath.keys_named(self.json, "body:$", rule_for))
        return found

    # -- edits ----------------------------------------------------------------------------------
    def strip(self, location: str) -> bool:
        self.problem = ""
        return self._edit(location, None)

    def replace(self, location: str, finding: Finding, stand_in: Any) -> str | None:
        """Replace the value at `location` with `stand_in(current value)`; the reason when it
        cannot."""
        self.problem = ""
        current = self.value_at(location)
        if current is None:
            return self.problem or f"nothing to replace at {location}"
        kind, steps = loc.parse(location)
        if kind in PAIRS and len(steps) == 1 and steps[0].kind == NAME:
            name = str(steps[0].value)
            sent = self.pairs(kind).all(name)
            if len(sent) > 1:  # sent more than once: a stand-in for each of its values
                values = [stand_in(v) for v in sent]
                if not any(values):  # a value with none is not one of its category
                    return f"no valid stand-in for this {finding.category} value"
                self.pairs(kind).set_each(name, values)
                return None
        value = stand_in(current)
        if value is None:
            return f"no valid stand-in for this {finding.category} value"
        if not self._edit(location, value):
            return self.problem or f"cannot edit {location}"
        return None

    def _target(self, location: str) -> tuple[str, tuple[Step, ...], Step, tuple[Step, ...]] | None:
        """(kind, steps, first step, the rest) of a location this request's parts can be
        edited at; None (with `problem` set) where they cannot."""
        try:
            kind, steps = loc.parse(location)
        except LocationError:
            self.problem = f"{location} is not a location shopguard can edit"
            return None
        if not self._editable(kind):
            return None
        first, rest = (steps[0], steps[1:]) if steps else (Step(NAME, ""), ())
        return kind, steps, first, rest

    def value_at(self, location: str) -> str | None:
        target = self._target(location)
        if target is None:
            return None
        kind, steps, first, rest = target
        if kind in PAIRS and first.kind in (NAME, DOCUMENT):
            name, rest = (str(first.value), rest) if first.kind == NAME else ("", steps)
            if rest and rest[0].kind == DOCUMENT:
                document = self.nested_json(kind, name)
                path, parts = _split_parts(rest[1:])
                return _inside(jsonpath.scalar(jsonpath.get(_plain(document), path)), parts)
            return _inside(self.pairs(kind).get(name), rest)
        if kind == "body" and first.kind == DOCUMENT:
            path, parts = _split_parts(rest)
            return _inside(jsonpath.scalar(jsonpath.get(self.json, path)), parts)
        if kind == "cookie" and first.kind == NAME:
            return _inside(self.cookies.get(str(first.value)), rest, str(first.value))
        if kind == "header" and first.kind == NAME:
            return _inside(self.header(str(first.value)), rest, str(first.value))
        if kind == "path" and first.kind == INDEX:
            segments = [s for s in self.path.split("/") if s]
            index = int(first.value)
            segment = decode.unquote(segments[index]) if index < len(segments) else None
            return _inside(segment, rest)
        self.problem = f"a value in {kind} cannot be edited in place"
        return None

    def _editable(self, kind: str) -> bool:
        if kind not in ("body", "body.form"):
            return True
        why = self.body.editable
        if why is None and kind == "body" and self.body.kind == JSON and self.json is None:
            why = jsonpath.UNFAITHFUL
        if why is None and kind == "body" and self.body.kind != JSON:
            why = f"the body is not JSON ({self.body.kind})"
        if why is None and kind == "body.form" and self.body.kind not in (FORM, MULTIPART):
            why = f"the body is not a form ({self.body.kind})"
        if why is not None:
            self.problem = why
            return False
        return True

    def _edit(self, location: str, value: str | None) -> bool:
        """Remove (value None) or set the value at `location`."""
        target = self._target(location)
        if target is None:
            return False
        kind, steps, first, rest = target
        missing = f"{location} is not in the request"
        if kind in PAIRS and first.kind in (NAME, DOCUMENT):
            pairs = self.pairs(kind)
            name, rest = (str(first.value), rest) if first.kind == NAME else ("", steps)
            if not rest:
                done = pairs.remove(name) if value is None else pairs.set(name, value)
                if not done:  # e.g. a binary multipart part
                    self.problem = f"{location} cannot be edited (not a query or form field)"
                return done
            if rest[0].kind == DOCUMENT:
                document = self.nested_json(kind, name)
                if document is None or not _edit_json(_plain(document), rest[1:], value):
                    self.problem = missing
                    return False
                if not isinstance(document, _Edited):
                    self.nested[(kind, name)] = _Edited(document)
                return True
            changed = _edit_inside(pairs.get(name), rest, value)
            if changed is None:
                self.problem = missing
                return False
            return pairs.set(name, changed)
        if kind == "body" and first.kind == DOCUMENT:
            if not _edit_json(self.json, rest, value):
                self.problem = missing
                return False
            self.body_changed = True
            return True
        if kind == "cookie" and first.kind == NAME:
            name = str(first.value)
            if not rest:
                return self.cookies.remove(name) if value is None else self.cookies.set(name, value)
            changed = _edit_inside(self.cookies.get(name), rest, value, name)
            if changed is None:
                self.problem = missing
                return False
            return self.cookies.set(name, changed)
        if kind == "header" and first.kind == NAME:
            return self._edit_header(str(first.value), rest, value, missing)
        if kind == "path" and first.kind == INDEX and value is not None and not rest:
            segments = self.path.split("/")
            nonempty = [i for i, s in enumerate(segments) if s]
            index = int(first.value)
            if index >= len(nonempty):
                self.problem = missing
                return False
            segments[nonempty[index]] = quote(value, safe=ENCODE_SAFE)
            self.path = "/".join(segments)
            self.path_changed = True
            return True
        if kind == "path":
            self.problem = (
                "a value inside a path segment cannot be edited in place"
                if rest
                else "a path segment can be replaced, not stripped"
            )
        else:
            self.problem = f"a value in {kind} cannot be edited in place"
        return False

    def _edit_header(
        self, name: str, rest: tuple[Step, ...], value: str | None, missing: str
    ) -> bool:
        if rest:
            changed = _edit_inside(self.header(name), rest, value, name)
            if changed is None:
                self.problem = missing
                return False
            value = changed
        elif value is None:
            before = len(self.headers)
            self.headers = [h for h in self.headers if h[0].lower() != name]
            self.headers_changed |= len(self.headers) != before
            return len(self.headers) != before
        found = False
        for header in self.headers:
            if header[0].lower() == name:
                header[1], found = value, True
        self.headers_changed |= found
        if not found:
            self.problem = missing
        return found

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
        if self.body_changed and self.json is not None:
            before, after = self.body.frame
            text = f"{before}{jsonpath.dumps(self.json)}{after}"
            body = self.body.mark + text.encode(self.body.codec)
        elif self.form_read and self.form.changed:
            body = self.form.encoded()
        return url, headers, body


# -- values inside values: a URL's parameters, a form's, a JSON document in a string -----------


def _split_parts(steps: tuple[Step, ...]) -> tuple[tuple[Step, ...], tuple[Step, ...]]:
    """The steps into a JSON document, and those into a composite value held there (from its
    first `/part` step on)."""
    for index, step in enumerate(steps):
        if step.kind == PART:
            return steps[:index], steps[index:]
    return steps, ()


def _edit_json(document: Any, steps: tuple[Step, ...], new: str | None) -> bool:
    """Remove or set what is at `steps` in a JSON document, also a part of a string in it
    (`$.deviceID/1`: the string keeps its other parts)."""
    path, parts = _split_parts(steps)
    if not parts:
        return jsonpath.edit(document, path, new)
    current = jsonpath.get(document, path)
    changed = _edit_inside(current, parts, new) if isinstance(current, str) else None
    return changed is not None and jsonpath.edit(document, path, changed)


def _inside(value: str | None, steps: tuple[Step, ...], owner: str = "") -> str | None:
    """What is at `steps` inside `value` (the value of the header or cookie `owner`, whose
    parts `/name` steps name); `value` itself without steps."""
    if value is None or not steps:
        return value
    step = steps[0]
    if step.kind == PART:
        part = composite.find(value, owner, step.value)
        return _inside(value[part.start : part.end], steps[1:]) if part is not None else None
    if step.kind == DOCUMENT:
        document = jsonpath.faithful(value)
        found = jsonpath.scalar(jsonpath.get(document, steps[1:])) if document else None
        return found
    pairs = _params(value, step.kind)
    return _inside(pairs[1].get(str(step.value)), steps[1:]) if pairs is not None else None


def _edit_inside(
    value: str | None, steps: tuple[Step, ...], new: str | None, owner: str = ""
) -> str | None:
    """`value` with what is at `steps` inside it removed (`new` None) or set; None when that is
    not there. `owner`: the header or cookie the value is of (for its parts)."""
    if value is None or not steps:
        return None
    step = steps[0]
    if step.kind == PART:
        if len(steps) == 1:
            return composite.edited(value, owner, step.value, new)
        part = composite.find(value, owner, step.value)
        if part is None:
            return None
        inner = _edit_inside(value[part.start : part.end], steps[1:], new)
        return None if inner is None else value[: part.start] + inner + value[part.end :]
    if step.kind == DOCUMENT:
        document = jsonpath.faithful(value)
        if document is None or not jsonpath.edit(document, steps[1:], new):
            return None
        return jsonpath.dumps(document)
    found = _params(value, step.kind)
    if found is None:
        return None
    rebuild, pairs = found
    name = str(step.value)
    if len(steps) == 1:
        done = pairs.remove(name) if new is None else pairs.set(name, new)
    else:
        inner = _edit_inside(pairs.get(name), steps[1:], new)
        done = inner is not None and pairs.set(name, inner)
    return rebuild(pairs.text()) if done else None


def _params(value: str, kind: str) -> tuple[Any, Pairs] | None:
    """The parameters inside `value` — a URL's query (NAME) or fragment (FRAGMENT), or a form's
    — and how to put edited ones back."""
    if value[:8].lower().startswith(("https://", "http://")):
        try:
            split = urlsplit(value)
        except ValueError:
            return None
        if kind == FRAGMENT:
            return (lambda t: urlunsplit(split._replace(fragment=t))), Pairs(split.fragment, False)
        return (lambda t: urlunsplit(split._replace(query=t))), Pairs(split.query, True)
    if kind == NAME and "=" in value:
        return (lambda t: t), Pairs(value, True)
    return None
