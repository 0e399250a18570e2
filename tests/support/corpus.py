"""Replay the labelled corpus (tests/fixtures/corpus) through the engine and score it.

`python -m tests.support.corpus` prints the per-category table and every mismatch.
"""

from __future__ import annotations

import base64
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shopguard import paths
from shopguard.engine.detect import Detector
from shopguard.engine.findings import CATEGORIES
from shopguard.engine.known_values import KnownMatcher, load_profile
from shopguard.engine.pipeline import Context, process, route_request
from shopguard.engine.request import PlainRequest
from shopguard.engine.settings import load_config
from shopguard.engine.trackers import Linker

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"
SECRET = b"corpus-test-secret"


def plain_request(flow: dict[str, Any]) -> PlainRequest:
    request = flow["request"]
    headers = [(str(k), str(v)) for k, v in (request.get("headers") or {}).items()]
    if "body_b64" in request:
        body = base64.b64decode(request["body_b64"])
    else:
        body = str(request.get("body") or "").encode()
    response = []
    for name, value in (flow.get("response_headers") or {}).items():
        for item in value if isinstance(value, list) else [value]:
            response.append((str(name), str(item)))
    return PlainRequest(
        request.get("method", "GET"), request["url"], headers, body, False, response
    )


@dataclass
class Score:
    tp: Counter[str] = field(default_factory=Counter)
    fp: Counter[str] = field(default_factory=Counter)
    fn: Counter[str] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)
    flows: int = 0

    @staticmethod
    def ratio(a: int, b: int) -> float:
        return a / b if b else 1.0

    @property
    def precision(self) -> float:
        tp = sum(self.tp.values())
        return self.ratio(tp, tp + sum(self.fp.values()))

    @property
    def recall(self) -> float:
        tp = sum(self.tp.values())
        return self.ratio(tp, tp + sum(self.fn.values()))

    def table(self) -> str:
        rows = [f"{'category':<14}{'TP':>5}{'FP':>5}{'FN':>5}{'precision':>11}{'recall':>8}"]
        for cat in CATEGORIES:
            tp, fp, fn = self.tp[cat], self.fp[cat], self.fn[cat]
            if tp or fp or fn:
                rows.append(
                    f"{cat:<14}{tp:>5}{fp:>5}{fn:>5}"
                    f"{self.ratio(tp, tp + fp):>11.3f}{self.ratio(tp, tp + fn):>8.3f}"
                )
        rows.append(
            f"{'all (micro)':<14}{sum(self.tp.values()):>5}{sum(self.fp.values()):>5}"
            f"{sum(self.fn.values()):>5}{self.precision:>11.3f}{self.recall:>8.3f}"
            f"   over {self.flows} flows"
        )
        return "\n".join(rows)


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*.yaml") if p.name != "profile.yaml")


def evaluate(files: list[Path] | None = None) -> Score:
    config = load_config(paths.shipped_config_dir(), None)
    profile = load_profile(CORPUS / "profile.yaml")
    detector = Detector(SECRET, KnownMatcher(profile), profile.default_region)
    score = Score()
    for path in files or corpus_files():
        ctx = Context(config, detector, Linker())  # each file is one browsing sequence
        for flow in yaml.safe_load(path.read_text(encoding="utf-8"))["flows"]:
            request = plain_request(flow)
            routed = route_request(ctx, request)
            findings = process(ctx, request, routed, inspect_unrouted=True).findings
            found = {f.category for f in findings}
            expected = set(flow["expect"])
            score.flows += 1
            for cat in found & expected:
                score.tp[cat] += 1
            for cat in found - expected:
                score.fp[cat] += 1
                where = [
                    f"{f.location} ({f.detector}, {f.transform or 'plain'}, {f.preview})"
                    for f in findings
                    if f.category == cat
                ]
                score.mismatches.append(f"{path.name}:{flow['id']}: extra {cat}: {where}")
            for cat in expected - found:
                score.fn[cat] += 1
                score.mismatches.append(f"{path.name}:{flow['id']}: missed {cat}")
    return score


if __name__ == "__main__":
    result = evaluate()
    print("\n".join(result.mismatches))
    print(result.table())
