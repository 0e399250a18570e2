"""Differences between two benchmark results: `python bench/compare.py OLD.json NEW.json`.

Takes two files of `make bench-proxy` (or `make bench`: bench/results/latest.json) or of
`make bench-soak` (bench/results/soak.json). Prints, for every figure of every proxy, the old
and the new value — the median where it was measured in rounds, with the new spread — and the
change in per cent; counts (answers, errors, issuers, imported rules) figure by figure. Then
whether the two runs were made on comparable machines and settings, and their wall times.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

Figure = tuple[float, tuple[float, float] | None]  # value (median), spread


def _flatten(prefix: str, value: Any, out: dict[str, Figure]) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int | float):
        out[prefix] = (float(value), None)
    elif isinstance(value, dict) and "median" in value:
        out[prefix] = (float(value["median"]), (float(value["min"]), float(value["max"])))
    elif isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, list) and value and all(isinstance(x, int | float) for x in value):
        out[prefix] = (float(statistics.median(value)), (float(min(value)), float(max(value))))


def _figures(result: dict[str, Any]) -> dict[tuple[str, str], Figure]:
    out: dict[tuple[str, str], Figure] = {}
    for proxy, figures in result["summary"].items():
        flat: dict[str, Figure] = {}
        _flatten("", figures, flat)
        for name, figure in flat.items():
            out[(proxy, name)] = figure
    return out


def _machine_line(label: str, result: dict[str, Any]) -> str:
    machine = result["machine"]
    load = machine.get("load_average_before")
    return (
        f"{label}: {result['date']}  {machine['cores']} cores"
        + (f" ({machine['cpu']})" if machine.get("cpu") else "")
        + f", Python {machine['python']}, mitmproxy {machine['mitmproxy']}"
        + (f", load average {load[0]:.1f} before the run" if load else "")
        + (f"; wall time {result['wall_s']:.0f} s" if "wall_s" in result else "")
    )


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: compare.py OLD.json NEW.json", file=sys.stderr)
        return 2
    old, new = (json.loads(Path(x).read_text(encoding="utf-8")) for x in sys.argv[1:])
    same = ("cores", "cpu", "python", "mitmproxy", "platform")
    for label, result in (("old", old), ("new", new)):
        print(_machine_line(label, result))
    if any(old["machine"].get(k) != new["machine"].get(k) for k in same):
        print("  (different machines or versions: compare ratios, not absolute figures)")
    if old["settings"] != new["settings"]:
        keys = set(old["settings"]) | set(new["settings"])
        changed = sorted(k for k in keys if old["settings"].get(k) != new["settings"].get(k))
        print(f"  (different settings: {', '.join(changed)})")
    before, after = _figures(old), _figures(new)
    proxies = list(new["summary"]) + [p for p in old["summary"] if p not in new["summary"]]
    proxy = None
    for key in sorted(set(before) | set(after), key=lambda k: (proxies.index(k[0]), k[1])):
        if key[0] != proxy:
            proxy = key[0]
            print(proxy)
        if key not in before or key not in after:
            print(f"  {key[1]:<44} {'only in new' if key in after else 'only in old'}")
            continue
        (a, _), (b, spread) = before[key], after[key]
        change = f"{(b - a) / abs(a) * 100:+6.1f} %" if a else "        "
        line = f"  {key[1]:<44} {a:10.2f} -> {b:10.2f}  {change}"
        if spread is not None:
            line += f"   (new spread {spread[0]:.2f}-{spread[1]:.2f})"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
