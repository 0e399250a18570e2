"""Fixtures shared by the integration and end-to-end tests: the fake marketplace on loopback.

Every audit log line written in this process is checked against the log's JSON Schema: a line
that does not follow it fails the test that wrote it (lines of real `shopguard run` processes
are checked by `tests.support.proxy`)."""

from __future__ import annotations

import json
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
