"""Differences between two `make bench-proxy` results: `python bench/compare.py OLD.json NEW.json`.

Prints, for every figure of every proxy, the old and the new median (with the new spread) and
the change in per cent; then whether the two runs were made on comparable machines and settings.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _figures(result: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for proxy, figures in result["summary"].items():
        for name, value in figures.items():
            if isinstance(value, dict) and "median" in value:
                out[(proxy, name)] = value
    return out


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: compare.py OLD.json NEW.json", file=sys.stderr)
        return 2
    old, new = (json.loads(Path(x).read_text(encoding="utf-8")) for x in sys.argv[1:])
    same = ("cores", "python", "mitmproxy", "platform")
    for label, result in (("old", old), ("new", new)):
        machine = result["machine"]
        load = machine.get("load_average_before")
        print(
            f"{label}: {result['date']}  {machine['cores']} cores, Python {machine['python']},"
            f" mitmproxy {machine['mitmproxy']}"
            + (f", load average {load[0]:.1f} before the run" if load else "")
        )
    if any(old["machine"].get(k) != new["machine"].get(k) for k in same):
        print("  (different machines or versions: compare ratios, not absolute figures)")
    if old["settings"] != new["settings"]:
        changed = sorted(k for k in new["settings"] if old["settings"].get(k) != new["settings"][k])
        print(f"  (different settings: {', '.join(changed)})")
    before, after = _figures(old), _figures(new)
    proxy = None
    for key in sorted(
        set(before) | set(after),
        key=lambda k: (list(new["summary"]).index(k[0]) if k[0] in new["summary"] else 99, k[1]),
    ):
        if key[0] != proxy:
            proxy = key[0]
            print(proxy)
        if key not in before or key not in after:
            print(f"  {key[1]:<32} {'only in new' if key in after else 'only in old'}")
            continue
        a, b = before[key]["median"], after[key]["median"]
        change = f"{(b - a) / abs(a) * 100:+6.1f} %" if a else "      "
        print(
            f"  {key[1]:<32} {a:10.2f} -> {b:10.2f}  {change}"
            f"   (new spread {after[key]['min']:.2f}-{after[key]['max']:.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
