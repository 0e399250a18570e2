"""Fixtures shared by the integration and end-to-end tests: the fake marketplace on loopback.

Every audit log line written in this process is checked against the log's JSON Schema: a line
that does not follow it fails the test that wrote it (lines of real `shopguard run` processes
are checked by `tests.support.proxy`)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import subprocess
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from shopguard.auditlog import RotatingFile
from tests.support.certs import UpstreamPKI, make_pki
from tests.support.logschema import problem
from tests.support.market import HOSTS, FakeMarket

PLACEHOLDERS = "placeholder_log_lines"  # the marker of tests whose lines are not checked


class LineCheck:
    """The schema problems of the lines written since the last look."""

    def __init__(self) -> None:
        self._problems: list[str] = []
        self._lock = threading.Lock()

    def see(self, message: str) -> None:
        try:
            found = problem(json.loads(message))
        except ValueError as exc:
            found = f"a log line that is not JSON ({exc}): {message[:200]}"
        if found is not None:
            with self._lock:
                self._problems.append(f"{found}\n  line: {message[:2000]}")

    def take(self) -> list[str]:
        with self._lock:
            taken, self._problems = self._problems, []
        return taken


LINES = LineCheck()


def _fail_on(problems: list[str], when: str) -> None:
    if problems:
        pytest.fail(
            f"{len(problems)} audit log line(s) written {when} do not follow the schema:\n"
            + "\n".join(problems),
            pytrace=False,
        )


@pytest.fixture(scope="session", autouse=True)
def log_lines_follow_the_schema() -> Iterator[None]:
    """Every line passes through RotatingFile's write method (structlog calls it by the
    level's name): each is checked there, as the JSON text that goes to the file."""
    write = RotatingFile.msg

    def checked(self: RotatingFile, message: str) -> None:
        LINES.see(message)
        write(self, message)

    with pytest.MonkeyPatch.context() as patch:
        for name in ("msg", "info", "warning", "error"):
            patch.setattr(RotatingFile, name, checked)
        yield
    _fail_on(LINES.take(), "after the last test")


@pytest.fixture(autouse=True)
def log_lines_of_this_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """The lines written while the test's fixtures are torn down (those of the test itself are
    looked at right after it ran, below)."""
    yield
    problems = LINES.take()
    if request.node.get_closest_marker(PLACEHOLDERS) is None:
        _fail_on(problems, "while tearing down this test")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    try:
        return (yield)
    finally:
        problems = LINES.take()
        if item.get_closest_marker(PLACEHOLDERS) is None:
            _fail_on(problems, "by this test")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> UpstreamPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), HOSTS)


@pytest.fixture(scope="session")
def market(pki: UpstreamPKI) -> Iterator[FakeMarket]:
    server = FakeMarket(pki).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home directory for one proxy process (config, state, CA, log)."""
    return tmp_path_factory.mktemp("home")


# --- nothing exposed ----------------------------------------------------------------------------
#
# One pass at the end of the session over everything the suite produced — the files below
# pytest's base temporary directory (logs, the proxies' error output), the proxies' standard
# output, the output of the commands tests ran, and the output pytest captured — fails the
# session on any fixture profile value in any form (plain, normalised, url-encoded, base64, md5,
# sha1 or sha256 hex). Exempt by test: those that ask for raw values (`log.values: raw`,
# `explain --raw`; found in their source) and those that expect a known exposure (an `xfail`
# test, or the `known_exposure` marker). While the suite runs it also notes the addresses each
# proxy it starts listens on (loopback unless the test passed `--allow-remote`); at the end it
# checks that the key and secret files the proxies wrote are mode 600.

RAW_ASKS = ("values: raw", "--raw", 'values="raw"', "values='raw'")
OUTPUT_SUFFIXES = (".jsonl", ".stderr", ".stdout", ".log", ".out")
SECRET_FILES = ("secret.key", "mitmproxy-ca.pem", "mitmproxy-ca.p12")
# commands whose output is the (fake) site's, not shopguard's: a browser's DOM, a client's body
CLIENTS = ("chromium", "chrome", "curl", "wget", "openssl", "certutil")
# Tests (by name) that show a known defect in output they do not own: the check expects their
# exposure, and fails once it is gone (as a strict xfail would: then remove the entry).
KNOWN_EXPOSURES: dict[str, str] = {}  # test id -> a known exposure it shows (none now)


class Produced:
    """What the session produced, noted as it goes; checked once at the end."""

    def __init__(self) -> None:
        self.current = ""  # the test being set up, run or torn down
        self.dirs: dict[Path, str] = {}  # temporary directory -> the test that made it
        self.texts: list[tuple[str, str, str]] = []  # (test, where, text)
        self.outputs: list[tuple[str, Any]] = []  # (test, tests.support.proxy.Output)
        self.listening: list[tuple[str, str, list[str]]] = []  # (test, command, addresses)
        self.raw_tests: set[str] = set()
        self.expected: dict[str, str] = {}  # test -> why it may expose values
        self.known: dict[str, str] = {}  # module -> the known exposure its tests must show

    def text(self, where: str, value: Any) -> None:
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and value:
            self.texts.append((self.current, where, value))


PRODUCED = Produced()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "known_exposure(reason): the test shows a known defect that writes profile values "
        "where the README says there are none; the session's exposure check expects them",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    import inspect

    for item in items:
        function = getattr(item, "function", None)
        try:
            source = inspect.getsource(function) if function is not None else ""
        except (OSError, TypeError):
            source = ""
        if any(ask in source for ask in RAW_ASKS):
            PRODUCED.raw_tests.add(item.nodeid)
        for name, reason in KNOWN_EXPOSURES.items():
            if item.nodeid.split("[")[0] == name:
                PRODUCED.expected[item.nodeid] = reason
                PRODUCED.known[name] = reason
        known = item.get_closest_marker("known_exposure")
        if known is not None:
            PRODUCED.known[item.nodeid.split("::")[0]] = str(known.kwargs.get("reason", ""))
            PRODUCED.expected[item.nodeid] = str(known.kwargs.get("reason", ""))
            continue
        marker = known or item.get_closest_marker("xfail")
        if marker is not None:
            PRODUCED.expected[item.nodeid] = str(
                marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            )


def pytest_runtest_logstart(nodeid: str) -> None:
    PRODUCED.current = nodeid


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for title, content in report.sections:
        PRODUCED.texts.append((report.nodeid, f"captured {title}", content))


def _listening(pid: int) -> list[str]:
    """The addresses process `pid` listens on (TCP, from /proc)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    except OSError:
        return []
    found = []
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:
                found.append(_address(fields[1]))
    return found


def _address(hex_address: str) -> str:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    # /proc/net/tcp writes each 32-bit word in host byte order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return f"{ipaddress.ip_address(words)}:{int(port, 16)}"


def _is_loopback(address: str) -> bool:
    host = ipaddress.ip_address(address.rpartition(":")[0])
    if isinstance(host, ipaddress.IPv6Address) and host.ipv4_mapped is not None:
        host = host.ipv4_mapped
    return host.is_loopback


@pytest.fixture(scope="session", autouse=True)
def note_what_the_session_produces() -> Iterator[None]:
    """Wraps the places output comes from, to note it (and whom it came from)."""
    from tests.support import proxy as proxy_support

    make_dir = pytest.TempPathFactory.mktemp
    read_output = pytest.CaptureFixture.readouterr
    run_command = subprocess.run
    output_init = proxy_support.Output.__init__
    wait_port = proxy_support.Output.wait_port

    def mktemp(self: pytest.TempPathFactory, basename: str, numbered: bool = True) -> Path:
        made = make_dir(self, basename, numbered)
        PRODUCED.dirs[made] = PRODUCED.current
        return made

    def readouterr(self: Any) -> Any:
        result = read_output(self)
        PRODUCED.text("capsys/capfd", result.out)
        PRODUCED.text("capsys/capfd", result.err)
        return result

    def run(*args: Any, **kwargs: Any) -> Any:
        done = run_command(*args, **kwargs)
        command = args[0] if args else kwargs.get("args", "")
        words = [str(a) for a in command] if isinstance(command, list | tuple) else [str(command)]
        program = Path(words[0].split()[0] if words and words[0] else "").name
        if not program.startswith(CLIENTS):
            PRODUCED.text("command output", done.stdout)
            PRODUCED.text("command output", done.stderr)
        return done

    def init(self: Any, process: subprocess.Popen[str]) -> None:
        output_init(self, process)
        self._noted_process = process
        PRODUCED.outputs.append((PRODUCED.current, self))

    def port(self: Any, timeout: float) -> int | None:
        found = wait_port(self, timeout)
        process = getattr(self, "_noted_process", None)
        if found is not None and process is not None:
            command = " ".join(str(a) for a in process.args)
            PRODUCED.listening.append((PRODUCED.current, command, _listening(process.pid)))
        return found

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pytest.TempPathFactory, "mktemp", mktemp)
        patch.setattr(pytest.CaptureFixture, "readouterr", readouterr)
        patch.setattr(subprocess, "run", run)
        patch.setattr(proxy_support.Output, "__init__", init)
        patch.setattr(proxy_support.Output, "wait_port", port)
        yield


def _profile_values(base: Path | None) -> set[str]:
    """Every value of the fixture profile and of the profiles tests wrote."""
    import yaml

    files = [Path(__file__).parent / "fixtures" / "corpus" / "profile.yaml"]
    if base is not None:
        files += [p for p in base.rglob("*.yaml") if "profile" in p.name]
    values: set[str] = set()
    for path in files:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, yaml.YAMLError):
            continue
        if not isinstance(loaded, dict):
            continue
        for key, items in loaded.items():
            if key != "default_region" and isinstance(items, list):
                values.update(str(v) for v in items if isinstance(v, str | int) and str(v))
    return values


def _forms(value: str) -> tuple[set[str], set[str]]:
    """A value's forms: (case-insensitive needles, case-sensitive needles: base64)."""
    import base64
    import hashlib
    import unicodedata
    from urllib.parse import quote, quote_plus

    plain = {value, unicodedata.normalize("NFKC", value).casefold(), value.replace(" ", "")}
    digits = re.sub(r"\D", "", value)
    if len(digits) >= 8 and not re.search(r"[^\d\s+()-]", value):  # a phone or card number
        plain.add(digits)
        if value.strip().startswith("+"):
            plain.update({"+" + digits, "00" + digits})
            for code in (1, 2, 3):
                if len(digits) - code >= 8:
                    plain.add(digits[code:])
                    national = digits[code:]
                    plain.add(f"{national[:3]}-{national[3:7]}-{national[7:]}")
                    plain.add(f"{national[:3]} {national[3:7]} {national[7:]}")
    insensitive, sensitive = set(), set()
    for form in plain:
        insensitive.add(form)
        insensitive.update({quote(form, safe=""), quote_plus(form, safe="")})
        data = form.encode()
        for name in ("md5", "sha1", "sha256"):
            insensitive.add(hashlib.new(name, data).hexdigest())
        for encoded in (base64.b64encode(data), base64.urlsafe_b64encode(data)):
            text = encoded.decode()
            sensitive.update({text, text.rstrip("=")})
    short = {n for n in insensitive | sensitive if len(n) < 3}
    return insensitive - short, sensitive - short


def _hits(text: str, automata: tuple[Any, Any]) -> list[str]:
    found = []
    for automaton, haystack in zip(automata, (text.lower(), text), strict=True):
        if automaton is None:
            continue
        for end, needle in automaton.iter(haystack):
            start = end - len(needle) + 1
            if needle.isdigit() or re.fullmatch(r"[0-9a-f]+", needle):
                before = haystack[start - 1 : start]
                after = haystack[end + 1 : end + 2]
                if re.match(r"[0-9A-Za-z.]", before) or re.match(r"[0-9A-Za-z]", after):
                    continue  # part of a longer number, hex string or timestamp
            found.append(f"{needle!r} in …{text[max(0, start - 60) : end + 30]!r}…")
            if len(found) >= 3:
                return found
    return found


def _automata(values: set[str]) -> tuple[Any, Any]:
    import ahocorasick

    built = []
    insensitive, sensitive = set(), set()
    for value in values:
        more_insensitive, more_sensitive = _forms(value)
        insensitive |= {n.lower() for n in more_insensitive}
        sensitive |= more_sensitive
    for needles in (insensitive, sensitive):
        if not needles:
            built.append(None)
            continue
        automaton = ahocorasick.Automaton()
        for needle in needles:
            automaton.add_word(needle, needle)
        automaton.make_automaton()
        built.append(automaton)
    return built[0], built[1]


def _owner(path: Path) -> str:
    for parent in (path, *path.parents):
        if parent in PRODUCED.dirs:
            return PRODUCED.dirs[parent]
    return ""


def _read(path: Path) -> str:
    import gzip

    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        with contextlib.suppress(OSError, EOFError):
            data = gzip.decompress(data)
    return data.decode("utf-8", "replace")


def _exposures(base: Path | None) -> tuple[list[str], dict[str, list[str]]]:
    """Problems, and the exposures of tests that expect them (by test)."""
    automata = _automata(_profile_values(base))
    sources: list[tuple[str, str, str]] = list(PRODUCED.texts)
    for test, output in PRODUCED.outputs:
        sources.append((test, "proxy output", output.text))
    if base is not None:
        for path in base.rglob("*"):
            name = path.name
            is_output = name.endswith(OUTPUT_SUFFIXES) or ".jsonl." in name
            if is_output and path.is_file() and "profile" not in name:
                with contextlib.suppress(OSError):
                    sources.append((_owner(path), str(path.relative_to(base)), _read(path)))
    problems: list[str] = []
    expected: dict[str, list[str]] = {}
    for test, where, text in dict.fromkeys(sources):  # (a report repeats earlier sections)
        if test in PRODUCED.raw_tests:
            continue
        hits = _hits(text, automata)
        if not hits:
            continue
        if test in PRODUCED.expected:
            expected.setdefault(test, []).append(where)
            continue
        problems.append(f"{test or '(no test)'}: {where}: " + "; ".join(hits))
    return problems, expected


def _access_problems(base: Path | None) -> list[str]:
    problems = []
    for test, command, addresses in PRODUCED.listening:
        if "--allow-remote" in command or test in PRODUCED.expected:
            continue
        for address in addresses:
            if not _is_loopback(address):
                problems.append(f"{test}: a proxy listened on {address}: {command[:200]}")
    if base is not None:
        for name in SECRET_FILES:
            for path in base.rglob(name):
                mode = path.stat().st_mode & 0o777
                if mode != 0o600 and _owner(path) not in PRODUCED.expected:
                    problems.append(f"{_owner(path)}: {path.relative_to(base)} has mode {mode:o}")
    return problems


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if session.config.option.collectonly or (not PRODUCED.texts and not PRODUCED.dirs):
        return
    factory = getattr(session.config, "_tmp_path_factory", None)
    base = factory.getbasetemp() if factory is not None else None
    problems, expected = _exposures(base)
    problems += _access_problems(base)
    ran = {test for test, _, _ in PRODUCED.texts} | set(PRODUCED.dirs.values())
    for name, reason in PRODUCED.known.items():

        def under(test: str, name: str = name) -> bool:
            return test.split("[")[0] == name or test.split("::")[0] == name

        if any(under(t) for t in ran) and not any(under(t) for t in expected):
            # strict, as an xfail: the defect is fixed, remove the marker or the entry
            problems.append(f"{name}: the known exposure is gone ({reason}): remove its marker")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("-", "nothing exposed")
        reporter.write_line(
            f"checked {len(PRODUCED.texts) + len(PRODUCED.outputs)} outputs, "
            f"{len(PRODUCED.dirs)} temporary directories, {len(PRODUCED.listening)} listening "
            f"proxies; raw values asked by {len(PRODUCED.raw_tests)} test(s)"
        )
        for test, wheres in sorted(expected.items()):
            reporter.write_line(f"expected ({PRODUCED.expected[test][:80]}): {test}: {wheres[:3]}")
        for problem_text in problems:
            reporter.write_line(f"EXPOSED: {problem_text[:1500]}", red=True)
    if problems and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
