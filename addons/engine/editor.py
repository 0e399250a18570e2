"""The request editor: removes or sets the value at a location, and writes the request back.

Each part of the request (query, fragment, path, headers, cookies, body) is parsed only when a
rule needs it. Edits are made on parsed structures and written back once (`result`), so that
several edits of one JSON document see the positions as they came (a removed array item leaves a
gap until then), and whatever no rule touched leaves as it came, to the byte.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from typing import Any
from urllib.parse import SplitResult, quote, urlunsplit

from shopguard.engine import composite, decode, jsonpath
from shopguard.engine import location as loc
from shopguard.engine.body import FORM, JSON, MULTIPART, Body, Multipart
from shopguard.engine.findings import Finding
from shopguard.engine.location import DOCUMENT, FRAGMENT, INDEX, NAME, PART, LocationError, Step
from shopguard.engine.memory import urlsplit
from shopguard.engine.policy import NameIndex, NameRule
from shopguard.engine.request import PlainRequest

ENCODE_SAFE = "-_.!~*'()"  # what JavaScript's encodeURIComponent leaves alone
PAIRS = ("query", "fragment", "body.form")


class _Named:
    """Items (lists whose `item[1]` is a name, None for an item without one) found by name
    through an index made on first use, so that a request of many fields costs one pass, not one
    per field. A removed name leaves the list when the list is next read whole."""

    def __init__(self) -> None:
        self._items: list[list[Any]] = []
        self._index: dict[str, list[list[Any]]] | None = None
        self._gone: set[str] = set()

    @property
    def items(self) -> list[list[Any]]:
        if self._gone:
            gone, self._gone = self._gone, set()
            self._items = [item for item in self._items if item[1] not in gone]
        return self._items

    def matching(self, name: str) -> list[list[Any]]:
        """The items named `name`, in order."""
        if self._index is None:
            index: dict[str, list[list[Any]]] = {}
            for item in self.items:
                if item[1] is not None:
                    index.setdefault(item[1], []).append(item)
            self._index = index
        return self._index.get(name, [])

    def unique_names(self) -> list[str]:
        """Each name once, in the order it first came."""
        self.matching("")
        assert self._index is not None
        return list(self._index)

    def drop(self, name: str) -> bool:
        """Remove every item named `name`; False when there is none."""
        if not self.matching(name):
            return False
        assert self._index is not None
        del self._index[name]
        self._gone.add(name)
        return True


class Fields(_Named):
    """What query strings, forms and multipart bodies share: named items (`item[1]`, None for
    an item that is not a field), read and set one by one, some of which may be removed."""

    def __init__(self) -> None:
        super().__init__()
        self.removed = False

    def value_of(self, item: list[Any]) -> str:
        raise NotImplementedError

    def held(self, item: list[Any]) -> str | _Held:
        """The value of `item` as the editor holds it (parsed, where a rule edits inside it)."""
        return self.value_of(item)

    def set_item(self, item: list[Any], value: str | _Held) -> None:
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
        return bool(self.matching(name))

    def names(self) -> list[str]:
        return [item[1] for item in self.items if item[1] is not None]

    def get(self, name: str) -> str | None:
        matching = self.matching(name)
        return self.value_of(matching[0]) if matching else None

    def slot(self, name: str) -> str | _Held | None:
        """The first value sent under `name`, as held (see `held`)."""
        matching = self.matching(name)
        return self.held(matching[0]) if matching else None

    def all(self, name: str) -> list[str]:
        """Every value sent under `name` (a field may be sent more than once)."""
        return [self.value_of(item) for item in self.matching(name)]

    def set(self, name: str, value: str | _Held) -> bool:
        matching = self.matching(name)
        for item in matching:
            self.set_item(item, value)
        return bool(matching)

    def set_each(self, name: str, values: list[str | None]) -> None:
        """Set the values sent under `name` one by one; None leaves one as it came."""
        for item, value in zip(self.matching(name), values, strict=True):
            if value is not None:
                self.set_item(item, value)

    def remove(self, name: str) -> bool:
        done = self.drop(name)
        self.removed |= done
        return done


class Pairs(Fields):
    """`a=1&b=2` with its raw form kept, so that untouched pairs leave exactly as they came.

    Values are decoded only when asked for: most requests only need their names.
    """

    def __init__(self, text: str, plus: bool) -> None:
        super().__init__()
        self.plus = plus
        for raw in text.split("&") if text else []:  # [raw pair, name, value, edited]
            name = raw.partition("=")[0]
            self._items.append([raw, decode.unquote(name, plus=True), None, False])

    @property
    def changed(self) -> bool:
        return self.removed or any(item[3] for item in self.items)

    def value_of(self, item: list[Any]) -> str:
        if item[2] is None:
            item[2] = decode.unquote(item[0].partition("=")[2], plus=self.plus)
        return str(item[2])

    def held(self, item: list[Any]) -> str | _Held:
        return item[2] if isinstance(item[2], _Held) else self.value_of(item)

    def set_item(self, item: list[Any], value: str | _Held) -> None:
        item[2], item[3] = value, True

    def original(self, name: str) -> str | None:
        matching = self.matching(name)
        raw = matching[0][0] if matching else None
        return decode.unquote(raw.partition("=")[2], plus=self.plus) if raw is not None else None

    def restore(self, name: str) -> None:
        """Put `name` back as it came (raw), undoing edits."""
        for item in self.matching(name):
            item[2], item[3] = None, False

    def text(self) -> str:
        return "&".join(
            f"{quote(i[1], safe=ENCODE_SAFE)}={quote(str(i[2]), safe=ENCODE_SAFE)}"
            if i[3]
            else i[0]
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
            self._items.append([part, part.disposition[0] if text is not None else None, None])

    @property
    def changed(self) -> bool:
        return self.removed or any(item[2] is not None for item in self.items)

    def value_of(self, item: list[Any]) -> str:
        return str(item[2]) if item[2] is not None else item[0].text or ""

    def held(self, item: list[Any]) -> str | _Held:
        return item[2] if isinstance(item[2], _Held) else self.value_of(item)

    def set_item(self, item: list[Any], value: str | _Held) -> None:
        item[2] = value

    def original(self, name: str) -> str | None:
        matching = self.matching(name)
        return (matching[0][0].text or "") if matching else None

    def restore(self, name: str) -> None:
        for item in self.matching(name):
            item[2] = None

    def encoded(self) -> bytes:
        return self.body.encoded(
            part if edited is None else part._replace(content=str(edited).encode())
            for part, _, edited in self.items
        )


class Headers(_Named):
    """The request's headers, found by their names in lower case: [name, lower-case name,
    value]."""

    def __init__(self, headers: Iterable[tuple[str, str]]) -> None:
        super().__init__()
        self._items = [[name, name.lower(), value] for name, value in headers]

    def pairs(self) -> list[tuple[str, str]]:
        return [(item[0], str(item[2])) for item in self.items]


class Cookies(_Named):
    """The pairs of every Cookie header (HTTP/2 clients send one per cookie), each edited in
    place; parts without `=` stay as they were."""

    def __init__(self, headers: Headers) -> None:
        super().__init__()
        # [the Cookie header, name or None, value or raw part]
        for header in headers.matching("cookie"):
            for part in str(header[2]).split(";"):
                key, eq, content = part.strip().partition("=")
                if eq and key:
                    self._items.append([header, key, content])
                elif part.strip():
                    self._items.append([header, None, part.strip()])
        self.changed = False

    def names(self) -> list[str]:
        return [p[1] for p in self.items if p[1] is not None]

    def get(self, name: str) -> str | None:
        matching = self.matching(name)
        return str(matching[0][2]) if matching else None

    def slot(self, name: str) -> str | _Held | None:
        matching = self.matching(name)
        return matching[0][2] if matching else None

    def set(self, name: str, value: str | _Held) -> bool:
        matching = self.matching(name)
        for part in matching:
            part[2] = value
        self.changed |= bool(matching)
        return bool(matching)

    def remove(self, name: str) -> bool:
        done = self.drop(name)
        self.changed |= done
        return done

    def apply(
        self, headers: list[tuple[str, str]], items: list[list[Any]]
    ) -> list[tuple[str, str]]:
        """The headers (`items`, as `headers` holds them) with each Cookie header rewritten from
        its remaining parts (an emptied Cookie header is dropped)."""
        kept: dict[int, list[str]] = {}
        for p in self.items:
            kept.setdefault(id(p[0]), []).append(
                f"{p[1]}={p[2]}" if p[1] is not None else str(p[2])
            )
        out = []
        for (name, value), item in zip(headers, items, strict=True):
            if item[1] == "cookie":
                if id(item) not in kept:
                    continue
                value = "; ".join(kept[id(item)])
            out.append((name, value))
        return out


class _Held:
    """A value whose parameters (`kind` NAME or FRAGMENT) or JSON (DOCUMENT) rules read and edit
    inside: parsed once, written out when it is read whole, as it came while nothing in it was
    edited. (Parsing it again for each edit would cost its length for each of its fields.)"""

    __slots__ = ("edited", "inner", "kind", "original", "rebuild", "written")

    def __init__(self, original: str, kind: str, inner: Any, rebuild: Any = None) -> None:
        self.original = original
        self.kind = kind
        self.inner = inner  # Pairs, or the parsed document
        self.rebuild = rebuild  # the value from its parameters' text
        self.edited = False
        self.written: str | None = None

    def touch(self) -> None:
        self.edited, self.written = True, None

    def __str__(self) -> str:
        if not self.edited:
            return self.original
        if self.written is None:
            if self.kind == DOCUMENT:
                self.written = jsonpath.dumps(self.inner)
            else:
                self.written = self.rebuild(self.inner.text())
        return self.written


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
        self._path = split.path
        self._segments: list[str] | None = None  # the path split at `/`
        self._nonempty: list[int] | None = None  # the positions of its non-empty segments
        self._decoded: dict[int, str] = {}  # non-empty segments decoded, by their index
        self.query = Pairs(split.query, plus=True)
        self.fragment = Pairs(split.fragment, plus=False)
        self.headers = Headers(request.headers)
        self.problem = ""
        self.body_changed = False
        self.headers_changed = False
        self.path_changed = False
        self.nested: dict[tuple[str, str], Any] = {}  # JSON inside a query or form value
        self._unwritten: dict[tuple[str, str], None] = {}  # nested JSON edited, not written back
        self._read: dict[tuple[int, str], tuple[str, _Held | None]] = {}  # values parsed to be
        # read inside (by the identity of the text: the parts keep theirs)

    @property
    def path(self) -> str:
        if self._segments is not None and self.path_changed:
            self._path = "/".join(self._segments)
        return self._path

    def segments(self) -> tuple[list[str], list[int]]:
        """The path's segments (split at `/`) and the positions of the non-empty ones."""
        if self._segments is None:
            self._segments = self._path.split("/")
        if self._nonempty is None:
            self._nonempty = [i for i, s in enumerate(self._segments) if s]
        return self._segments, self._nonempty

    def header(self, name: str) -> str | None:
        matching = self.headers.matching(name)
        return str(matching[0][2]) if matching else None

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
        for key in self._unwritten:
            document = self.nested.get(key)
            if isinstance(document, _Edited):
                self.pairs(key[0]).set(key[1], jsonpath.dumps(document.value))
        self._unwritten.clear()

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
            present = [h[1] for h in self.headers.items]
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
            for name in pairs.unique_names():  # (a name sent twice is one field to strip)
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
        read = self._read
        if kind in PAIRS and first.kind in (NAME, DOCUMENT):
            name, rest = (str(first.value), rest) if first.kind == NAME else ("", steps)
            if rest and rest[0].kind == DOCUMENT:
                document = self.nested_json(kind, name)
                path, parts = _split_parts(rest[1:])
                return _inside(jsonpath.scalar(jsonpath.get(_plain(document), path)), parts, read)
            return _inside(self.pairs(kind).slot(name), rest, read)
        if kind == "body" and first.kind == DOCUMENT:
            path, parts = _split_parts(rest)
            return _inside(jsonpath.scalar(jsonpath.get(self.json, path)), parts, read)
        if kind == "cookie" and first.kind == NAME:
            return _inside(self.cookies.slot(str(first.value)), rest, read, str(first.value))
        if kind == "header" and first.kind == NAME:
            return _inside(self._header_slot(str(first.value)), rest, read, str(first.value))
        if kind == "path" and first.kind == INDEX:
            segments, nonempty = self.segments()
            index = int(first.value)
            segment = self._decoded.get(index)
            if segment is None and index < len(nonempty):
                segment = self._decoded[index] = decode.unquote(segments[nonempty[index]])
            return _inside(segment, rest, read)
        self.problem = f"a value in {kind} cannot be edited in place"
        return None

    def _header_slot(self, name: str) -> str | _Held | None:
        matching = self.headers.matching(name)
        return matching[0][2] if matching else None

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
                self._unwritten[(kind, name)] = None
                return True
            changed = _edit_inside(pairs.slot(name), rest, value)
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
            changed = _edit_inside(self.cookies.slot(name), rest, value, name)
            if changed is None:
                self.problem = missing
                return False
            return self.cookies.set(name, changed)
        if kind == "header" and first.kind == NAME:
            return self._edit_header(str(first.value), rest, value, missing)
        if kind == "path" and first.kind == INDEX and value is not None and not rest:
            segments, nonempty = self.segments()
            index = int(first.value)
            if index >= len(nonempty):
                self.problem = missing
                return False
            segments[nonempty[index]] = written = quote(value, safe=ENCODE_SAFE)
            self._decoded.pop(index, None)
            if not written:  # an emptied segment no longer counts
                self._nonempty = None
                self._decoded.clear()
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
        held: str | _Held | None = value
        if rest:
            held = _edit_inside(self._header_slot(name), rest, value, name)
            if held is None:
                self.problem = missing
                return False
        elif value is None:
            done = self.headers.drop(name)
            self.headers_changed |= done
            return done
        matching = self.headers.matching(name)
        for header in matching:
            header[2] = held
        self.headers_changed |= bool(matching)
        if not matching:
            self.problem = missing
        return bool(matching)

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
        headers = self.headers.pairs()
        if "cookies" in self.__dict__ and self.cookies.changed:
            headers = self.cookies.apply(headers, self.headers.items)
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
    return changed is not None and jsonpath.edit(document, path, str(changed))


def _inside(
    value: str | _Held | None,
    steps: tuple[Step, ...],
    read: dict[tuple[int, str], tuple[str, _Held | None]],
    owner: str = "",
) -> str | None:
    """What is at `steps` inside `value` (the value of the header or cookie `owner`, whose
    parts `/name` steps name); `value` itself without steps. `read`: the values parsed to be
    read inside, by the identity of their text (a value read again is not parsed again)."""
    if value is None or not steps:
        return None if value is None else str(value)
    step = steps[0]
    if step.kind == PART:
        text = str(value)
        part = composite.find(text, owner, step.value)
        return _inside(text[part.start : part.end], steps[1:], read) if part is not None else None
    held = value if isinstance(value, _Held) and value.kind == step.kind else None
    if held is None:
        text = str(value)
        known = read.get((id(text), step.kind))
        if known is None or known[0] is not text:
            known = read[(id(text), step.kind)] = (text, _held(text, step.kind))
        held = known[1]
    if held is None:
        return None
    if step.kind == DOCUMENT:
        return jsonpath.scalar(_peek(held.inner, steps[1:])) if held.inner else None
    return _inside(held.inner.slot(str(step.value)), steps[1:], read)


def _edit_inside(
    value: str | _Held | None, steps: tuple[Step, ...], new: str | None, owner: str = ""
) -> str | _Held | None:
    """`value` with what is at `steps` inside it removed (`new` None) or set; None when that is
    not there. `owner`: the header or cookie the value is of (for its parts). Parameters and
    JSON inside it are edited in a `_Held` value, parsed once for all edits."""
    if value is None or not steps:
        return None
    step = steps[0]
    if step.kind == PART:
        text = str(value)
        if len(steps) == 1:
            return composite.edited(text, owner, step.value, new)
        part = composite.find(text, owner, step.value)
        if part is None:
            return None
        inner = _edit_inside(text[part.start : part.end], steps[1:], new)
        return None if inner is None else text[: part.start] + str(inner) + text[part.end :]
    held = value if isinstance(value, _Held) and value.kind == step.kind else None
    if held is None:
        held = _held(str(value), step.kind)
    if held is None:
        return None
    if step.kind == DOCUMENT:
        if not jsonpath.edit(held.inner, steps[1:], new):
            return None
        held.touch()
        return held
    pairs, name = held.inner, str(step.value)
    if len(steps) == 1:
        done = pairs.remove(name) if new is None else pairs.set(name, new)
    else:
        inner = _edit_inside(pairs.slot(name), steps[1:], new)
        done = inner is not None and pairs.set(name, inner)
    if not done:
        return None
    held.touch()
    return held


def _held(value: str, kind: str) -> _Held | None:
    """`value` parsed to be read or edited inside: its JSON (DOCUMENT), or the parameters of the
    URL or form it is (see `_params`); None where it is none of these."""
    if kind == DOCUMENT:
        document = jsonpath.faithful(value)
        return _Held(value, kind, document) if document is not None else None
    found = _params(value, kind)
    return _Held(value, kind, found[1], found[0]) if found is not None else None


def _peek(root: Any, steps: tuple[Step, ...]) -> Any:
    """What `jsonpath.get` finds at `steps` below `root`, without changing `root` (a JSON
    string on the way is parsed, not replaced by its document)."""
    node: Any = root
    for step in steps:
        if step.kind == DOCUMENT:
            if node is root:
                return None
            if isinstance(node, jsonpath.Embedded):
                node = node.value
            elif isinstance(node, str):
                node = jsonpath.faithful(node)
                if node is None:
                    return None
            else:
                return None
        elif step.kind == INDEX and isinstance(node, list):
            index = int(step.value)
            if index >= len(node) or node[index] is jsonpath.REMOVED:
                return None
            node = node[index]
        elif step.kind == NAME and isinstance(node, dict) and step.value in node:
            node = node[step.value]
        else:
            return None
    return None if node is root else node


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
