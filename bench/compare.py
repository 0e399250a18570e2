"""Differences between two benchmark results: `python bench/compare.py OLD.json NEW.json`.

Takes two files of `make bench-proxy` (or `make bench`: bench/results/latest.json) or of
`make bench-soak` (bench/results/soak.json). Prints, for every figure of every proxy, the old
and the new value — the median where it was measured in rounds, with the new spread — and the
change in per cent; counts (answers, errors, issuers, imported rules) figure by figure. Then
whether the two runs were made on comparable machines and settings, and their wall times.

`python bench/compare.py --table PROXY.json SOAK.json` prints instead the tables of README's
*Performance* section from a `make bench-proxy` and a `make bench-soak` result, each figure
beside its target, to paste over the old ones.
"""

from __future__ import annotations

import json
import statistics
import sys
import textwrap
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


def _m(figure: dict[str, Any], unit: str = "", digits: int = 2) -> str:
    """`median (min–max)` of a figure measured in rounds."""
    f = f"{{:.{digits}f}}"
    low, high = f.format(figure["min"]), f.format(figure["max"])
    return f"{f.format(figure['median'])}{unit} ({low}–{high})"


def table(proxy: dict[str, Any], soak: dict[str, Any]) -> None:
    """README's Performance tables: figures from a bench-proxy and a bench-soak result."""
    summary = proxy["summary"]
    names = [n for n in summary if n.startswith("shopguard")]
    machine = proxy["machine"]
    print(
        textwrap.fill(
            f"Measured {proxy['date'][:10]} on {machine['cores']} cores ({machine['cpu']}), Python"
            f" {machine['python']}, mitmproxy {machine['mitmproxy']}, load average"
            f" {machine['load_average_before'][0]:.1f} at the start; {proxy['settings']['rounds']}"
            f" rounds, plain HTTP sent by {proxy['settings'].get('http_client', 'loadgen.py')};"
            f" the run took {proxy['wall_s'] / 60:.1f} minutes. Median over rounds"
            " (lowest–highest).",
            width=96,
        )
        + "\n"
    )
    print("| figure | " + " | ".join(n.removeprefix("shopguard ") for n in names) + " | target |")
    print("|---" * (len(names) + 2) + "|")
    rows = [
        (
            "HTTP/1.1 keep-alive throughput, × bare mitmdump",
            "http_ratio",
            "×",
            "≥ 0.90× (5,000 rules: ≥ 0.85×)",
        ),
        (
            "HTTPS (CONNECT, intercepted) throughput, × bare",
            "https_ratio",
            "×",
            "≥ 0.90× (5,000 rules: ≥ 0.85×)",
        ),
        ("HTTP latency added at 50/s, p50", "latency_p50_added_ms", " ms", "≤ 0.5 ms"),
        ("HTTP latency added at 50/s, p99", "latency_p99_added_ms", " ms", "≤ 2 ms"),
        ("HTTPS latency added at 50/s, p50", "https_latency_p50_added_ms", " ms", "≤ 0.5 ms"),
        ("HTTPS latency added at 50/s, p99", "https_latency_p99_added_ms", " ms", "≤ 2 ms"),
        ("first handshake for a host, × bare", "handshake_first_ratio", "×", ""),
    ]
    for label, key, unit, target in rows:
        cells = [_m(summary[n][key], unit) for n in names]
        print(f"| {label} | " + " | ".join(cells) + f" | {target} |")
    rss = [f"{summary[n]['rss_mib_at_end']:.0f} MiB" for n in names]
    bare = summary["bare mitmdump"]["rss_mib_at_end"]
    print(f"| resident memory at the end (bare: {bare:.0f} MiB) | " + " | ".join(rss) + " | |")
    tunnel = summary["out of scope: shopguard observe, tunnel"]
    # (older results have no passthrough reference)
    passing = summary.get("out of scope: bare mitmdump, passing through", {})
    seen = ", ".join(sorted(tunnel["issuers"]))
    print(
        f"\nOut of scope (HTTPS to `{proxy['settings']['out_of_scope_host']}`, no site lists it),"
        " through shopguard and, for reference, through bare mitmdump told to pass it through"
        " (`--set ignore_hosts=…`):\n"
    )
    print(
        "| figure | shopguard (a tunnel) | bare mitmdump passing it through | target |\n"
        "|---|---|---|---|"
    )
    rows = [
        ("throughput, × bare mitmdump intercepting", "https_ratio_to_bare_intercepting", "×",
         "≥ 1.5×"),
        ("added per request against no proxy, p50", "request_p50_added_ms", " ms", "≤ 0.3 ms"),
        ("added per request against no proxy, p99", "request_p99_added_ms", " ms", ""),
        ("added per new connection against no proxy", "new_connection_added_ms", " ms",
         "≤ 2 ms"),
    ]  # fmt: skip
    for label, key, unit, target in rows:
        reference = _m(passing[key], unit) if key in passing else "–"
        print(f"| {label} | {_m(tunnel[key], unit)} | {reference} | {target} |")
    verdict = "intercepted!" if proxy.get("out_of_scope_intercepted") else "not intercepted"
    print(f"| certificates the client was shown | issued by {seen} ({verdict}) | | |")
    figures = soak["summary"]["shopguard enforce (soak)"]
    print(
        f"\nMemory (`make bench-soak`, {soak['date'][:10]}, {soak['wall_s'] / 60:.1f} minutes):\n"
    )
    print("| after | resident memory | open descriptors |\n|---|---|---|")
    for flows in (1_000, 20_000, 50_000):
        print(
            f"| {flows:,} flows | {figures[f'rss_mib_after_{flows}']:.0f} MiB |"
            f" {figures[f'open_descriptors_after_{flows}']} |"
        )


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--table":
        proxy, soak = (json.loads(Path(x).read_text(encoding="utf-8")) for x in sys.argv[2:])
        table(proxy, soak)
        return 0
    if len(sys.argv) != 3:
        print("usage: compare.py OLD.json NEW.json | --table PROXY.json SOAK.json", file=sys.stderr)
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
