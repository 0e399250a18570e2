"""Read `shopguard policy explain`'s text output back into findings."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from shopguard.engine.findings import CATEGORIES, DETECTORS

# `  <category> <location>[ [transform]]  <detector> <confidence>  <preview>`
_FINDING = re.compile(
    r"^  (?P<category>[a-z_]+) +(?P<location>.+?)(?: \[(?P<transform>[^\]]*)\])?"
    rf"  (?P<detector>{'|'.join(DETECTORS)}) (?P<confidence>[01]\.\d\d)  (?P<preview>.*)$"
)


class ExplainFormatError(ValueError):
    """Output that does not read as `policy explain` prints it."""


@dataclass
class Explained:
    site: str | None  # None: no configured site handles the request
    findings: list[dict[str, str]] = field(default_factory=list)

    @property
    def slots(self) -> set[tuple[str, str]]:
        return {(f["category"], f["location"]) for f in self.findings}


def parse_explain(text: str) -> Explained:
    lines = text.splitlines()
    if lines and "no configured site handles it" in lines[0]:
        return Explained(None)
    if not lines or not lines[0].startswith("site: "):
        raise ExplainFormatError(f"no `site:` line in {text!r}")
    site = lines[0][len("site: ") :].split(" ", 1)[0]
    result = Explained(site)
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("findings:"))
    except StopIteration:
        raise ExplainFormatError(f"no `findings:` line in {text!r}") from None
    if lines[start] == "findings: none":
        return result
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break  # `actions…`
        match = _FINDING.match(line)
        if match is None or match["category"] not in CATEGORIES:
            raise ExplainFormatError(f"unreadable finding line {line!r}")
        result.findings.append(match.groupdict(default=""))
    if not result.findings:
        raise ExplainFormatError(f"`findings:` without a finding in {text!r}")
    return result


# Each `policy explain` is its own call of the command's entry point (its own configuration,
# profile and detector: nothing of one request reaches the next), run in a few fresh
# interpreters rather than one per request, which would start Python and import shopguard
# each time.
_BATCH = """
import contextlib, io, json, sys, traceback
from shopguard.cli.main import main
done = []
for argv in json.load(sys.stdin):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except Exception:
            traceback.print_exc()
            code = 70
    done.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
json.dump(done, sys.stdout)
"""


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str


def run_commands(
    argvs: list[list[str]], env: dict[str, str], processes: int, timeout: float
) -> list[Ran]:
    """`shopguard ARGV…` for each of `argvs`, spread over `processes` interpreters."""
    chunks = [list(range(i, len(argvs), processes)) for i in range(processes)]

    def run(chunk: list[int]) -> list[Ran]:
        if not chunk:
            return []
        done = subprocess.run(
            [sys.executable, "-c", _BATCH],
            input=json.dumps([argvs[i] for i in chunk]),
            env=env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the command batch failed: {done.stderr}")
        return [Ran(**x) for x in json.loads(done.stdout)]

    results: list[Ran | None] = [None] * len(argvs)
    with ThreadPoolExecutor(max_workers=processes) as pool:
        for chunk, ran in zip(chunks, pool.map(run, chunks), strict=True):
            for index, item in zip(chunk, ran, strict=True):
                results[index] = item
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]
