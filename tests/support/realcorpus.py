"""Score detection on the corpus rebuilt from real client traffic (tests/fixtures/real).

Labels name a category and a location (tests/fixtures/LABELLING.md). A finding matches a label
of its category when it is at the label's location or inside it (`query:data.$.deviceId`
matches `query:data`); a finding at a location no label of its category covers is a false
positive, a label no finding matches is a miss. Requests go through the same pipeline as the
proxy, routed as the proxy routes them: a request to a host no shipped site handles finds
nothing, so its labels are misses.

`python -m tests.support.realcorpus` prints the tables per category and per site and every
mismatch; `--without SITE` first removes that site's own identifier names (`tracking_ids`,
`device_ids`, `packed_ips`) from its file: the leave-one-site-out run, what the mechanisms find
without memorised names.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from shopguard import paths
from shopguard.engine.detect import Detector
from shopguard.engine.findings import CATEGORIES
from shopguard.engine.known_values import KnownMatcher, load_profile
from shopguard.engine.pipeline import Context, process, route_request
from shopguard.engine.settings import Config, load_config
from shopguard.engine.trackers import Linker, TrackerNames
from tests.support.corpus import CORPUS, SECRET, Score, plain_request

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"
MASKED_NAME = re.compile(r"\{([a-z_]+):[^{}]*\}")
STEP = (".", "[", "#", "/")


def real_files() -> list[Path]:
    return sorted(REAL.glob("*.yaml"))


def load_flows(path: Path) -> list[dict[str, Any]]:
    flows: list[dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))["flows"]
    return flows


def labels_of(flow: dict[str, Any]) -> set[tuple[str, str]]:
    """The (category, location) labels of a corpus entry."""
    found = set()
    for item in flow["expect"]:
        ((category, location),) = item.items()
        found.add((str(category), str(location)))
    return found


def normalise(location: str) -> str:
    """A finding's location as labels write it: a masked name keeps its category only."""
    return MASKED_NAME.sub(r"{\1}", location)


def covers(label: str, location: str) -> bool:
    """A finding at `location` is at the labelled place or inside it."""
    if location == label:
        return True
    return location.startswith(label) and location[len(label)] in STEP


@dataclass
class Cell:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    ratio = staticmethod(Score.ratio)  # (the synthetic corpus's: 1.0 for an empty cell)

    @property
    def positives(self) -> int:
        return self.tp + self.fn

    @property
    def precision(self) -> float:
        return self.ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return self.ratio(self.tp, self.tp + self.fn)


@dataclass
class RealScore:
    categories: dict[str, Cell] = field(default_factory=dict)
    sites: dict[str, Cell] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    flows: int = 0

    def count(self, category: str, site: str, what: str) -> None:
        for cells, key in ((self.categories, category), (self.sites, site)):
            cell = cells.setdefault(key, Cell())
            setattr(cell, what, getattr(cell, what) + 1)

    @property
    def total(self) -> Cell:
        return Cell(
            sum(c.tp for c in self.categories.values()),
            sum(c.fp for c in self.categories.values()),
            sum(c.fn for c in self.categories.values()),
        )

    def table(self) -> str:
        def rows(title: str, cells: dict[str, Cell], order: list[str]) -> list[str]:
            out = [f"{title:<14}{'TP':>5}{'FP':>5}{'FN':>5}{'precision':>11}{'recall':>8}"]
            for key in order:
                if (cell := cells.get(key)) is not None:
                    out.append(
                        f"{key:<14}{cell.tp:>5}{cell.fp:>5}{cell.fn:>5}"
                        f"{cell.precision:>11.3f}{cell.recall:>8.3f}"
                    )
            return out

        total = self.total
        lines = rows("category", self.categories, list(CATEGORIES))
        lines.append(
            f"{'all (micro)':<14}{total.tp:>5}{total.fp:>5}{total.fn:>5}"
            f"{total.precision:>11.3f}{total.recall:>8.3f}   over {self.flows} requests"
        )
        lines += ["", *rows("site", self.sites, sorted(self.sites))]
        return "\n".join(lines)


def evaluate(files: list[Path] | None = None, config: Config | None = None) -> RealScore:
    config = config or load_config(paths.shipped_config_dir(), None)
    profile = load_profile(CORPUS / "profile.yaml")
    detector = Detector(SECRET, KnownMatcher(profile), profile.default_region)
    score = RealScore()
    for path in files or real_files():
        ctx = Context(config, detector, Linker())  # each file is one browsing sequence
        for flow in load_flows(path):
            request = plain_request(flow)
            routed = route_request(ctx, request)
            findings = process(ctx, request, routed).findings
            found = {(f.category, normalise(f.location)) for f in findings}
            labels = labels_of(flow)
            site, where = str(flow["site"]), f"{path.name}:{flow['id']}"
            score.flows += 1
            for category, label in sorted(labels):
                hit = any(c == category and covers(label, loc) for c, loc in found)
                score.count(category, site, "tp" if hit else "fn")
                if not hit:
                    near = sorted(loc for c, loc in found if c == category)
                    unrouted = "" if routed else " (no shipped site handles the host)"
                    score.mismatches.append(
                        f"{where}: missed {category} {label}{unrouted}"
                        + (f"; found at {near}" if near else "")
                    )
            for category, location in sorted(found):
                if not any(c == category and covers(lab, location) for c, lab in labels):
                    score.count(category, site, "fp")
                    score.mismatches.append(f"{where}: extra {category} {location}")
    return score


def without_names(config: Config, site: str) -> Config:
    """`config` with `site`'s own identifier names removed (its `not_identifiers`, the names
    common to every site and the key dictionary stay)."""
    sites = tuple(
        replace(s, tracking_ids=TrackerNames(), device_ids=TrackerNames(), packed_ips=())
        if s.name == site
        else s
        for s in config.sites
    )
    return Config(config.settings, sites, config.files)


if __name__ == "__main__":
    shipped = load_config(paths.shipped_config_dir(), None)
    if sys.argv[1:2] == ["--without"]:
        left_out = sys.argv[2]
        files = [p for p in real_files() if any(f["site"] == left_out for f in load_flows(p))]
        result = evaluate(files, without_names(shipped, left_out))
        result.sites = {k: v for k, v in result.sites.items() if k == left_out}
    else:
        result = evaluate(config=shipped)
    print("\n".join(result.mismatches))
    print(result.table())
