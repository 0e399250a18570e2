"""`shopguard report --format html`: one self-contained page that opens offline.

Its Content-Security-Policy is `default-src 'none'` with the hashes of its one inline style and
one inline script, so the browser itself guarantees that the page fetches nothing; every value
in it is escaped text from the report's aggregates (masked values and counts, no raw value), so
a log of any size gives a page of bounded size.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from html import escape
from typing import IO, Any

from shopguard import __version__
from shopguard.cli.report import counted, rule_text

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
p.lead { font-size: 1.05em; } .muted { color: #666; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; cursor: pointer; user-select: none; }
th.sorted-up::after { content: " \\25B2"; } th.sorted-down::after { content: " \\25BC"; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: .9em; background: #f6f6f6; padding: 0 .2em; }
input.filter { margin: .25em 0; padding: .2em .4em; width: 20em; }
.h0 { background: #fff; } .h1 { background: #fde0dd; } .h2 { background: #fa9fb5; }
.h3 { background: #f768a1; color: #fff; } .h4 { background: #ae017e; color: #fff; }
.bar { display: inline-block; height: .8em; background: #ae017e; vertical-align: middle; }
.w0 { width: 0; } .w1 { width: 2em; } .w2 { width: 4em; } .w3 { width: 6em; }
.w4 { width: 8em; } .w5 { width: 10em; } .w6 { width: 12em; } .w7 { width: 14em; }
.w8 { width: 16em; } .w9 { width: 18em; } .w10 { width: 20em; }
.serious { color: #a00; font-weight: bold; }
"""

SCRIPT = """
(function () {
  function text(cell) { return cell.textContent.trim(); }
  function key(value) { var n = Number(value); return value !== "" && !isNaN(n) ? n : value; }
  document.querySelectorAll("table.data").forEach(function (table) {
    var body = table.tBodies[0];
    table.querySelectorAll("th").forEach(function (th, column) {
      th.addEventListener("click", function () {
        var up = !th.classList.contains("sorted-up");
        table.querySelectorAll("th").forEach(function (x) {
          x.classList.remove("sorted-up", "sorted-down");
        });
        th.classList.add(up ? "sorted-up" : "sorted-down");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(text(a.cells[column])), y = key(text(b.cells[column]));
          return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
    var filter = table.previousElementSibling;
    if (filter && filter.classList.contains("filter")) {
      filter.addEventListener("input", function () {
        var wanted = filter.value.toLowerCase();
        Array.prototype.forEach.call(body.rows, function (row) {
          row.hidden = wanted !== "" && row.textContent.toLowerCase().indexOf(wanted) < 0;
        });
      });
    }
  });
  document.body.setAttribute("data-ready", "yes");
})();
"""


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def policy() -> str:
    """The page's Content-Security-Policy: nothing but its own inline style and script."""
    return f"default-src 'none'; style-src {_hash(STYLE)}; script-src {_hash(SCRIPT)}"


def _table(
    header: Iterable[str],
    rows: list[list[Any]],
    *,
    numeric: frozenset[int] | set[int] = frozenset(),
    filter_label: str = "",
) -> str:
    if not rows:
        return '<p class="muted">Nothing.</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{escape(str(c))}</td>' if i in numeric else f"<td>{escape(str(c))}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    search = (
        f'<input class="filter" type="search" placeholder="{escape(filter_label)}" '
        f'aria-label="{escape(filter_label)}">'
        if filter_label
        else ""
    )
    return (
        f'{search}<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def _heat_class(count: int, top: int) -> str:
    if count <= 0 or top <= 0:
        return "h0"
    return f"h{min(4, 1 + (4 * count - 1) // top)}"


def _heat_map(data: dict[str, Any]) -> str:
    """Site × category × host: how often each host got each kind of data."""
    cells: dict[tuple[str, str], dict[str, int]] = {}
    categories: list[str] = []
    for name, site in data["sites"].items():
        for sent in site["sent"]:
            row = cells.setdefault((name, sent["host"]), {})
            row[sent["category"]] = row.get(sent["category"], 0) + sent["count"]
            if sent["category"] not in categories:
                categories.append(sent["category"])
    if not cells:
        return '<p class="muted">No personal data in these requests.</p>'
    top = max(n for row in cells.values() for n in row.values())
    head = "".join(f"<th>{escape(c)}</th>" for c in ["site", "host", *categories])
    body = []
    for (name, host), row in sorted(cells.items()):
        tds = "".join(
            f'<td class="n {_heat_class(row.get(c, 0), top)}">{row.get(c, 0) or ""}</td>'
            for c in categories
        )
        body.append(f"<tr><td>{escape(name)}</td><td>{escape(host)}</td>{tds}</tr>")
    return (
        f'<table class="data heatmap"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _timeline(data: dict[str, Any]) -> str:
    hours = data.get("timeline") or []
    if not hours:
        return '<p class="muted">No request carried personal data.</p>'
    top = max(h["requests"] for h in hours)
    rows = "".join(
        f"<tr><td>{escape(h['hour'].replace('T', ' '))}:00 UTC</td>"
        f'<td class="n">{h["requests"]}</td>'
        f'<td><span class="bar w{round(10 * h["requests"] / top)}"></span></td></tr>'
        for h in hours[-200:]  # (the latest 200 hours: the page stays small)
    )
    return (
        '<table class="data timeline"><thead><tr><th>hour</th><th>requests</th><th></th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
    )


def _party(third: bool) -> str:
    return "a third party" if third else "the shop"


def write_html(data: dict[str, Any], out: IO[str]) -> None:
    sites = data["sites"]
    requests = sum(s["requests"] for s in sites.values())
    unhandled = data["unhandled"]
    serious = [r for r in unhandled if r["third_party"]]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{escape(policy(), quote=False)}">',
        '<meta name="referrer" content="no-referrer">',
        "<title>What the shops learnt — shopguard report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>What the shops learnt about you</h1>",
        f'<p class="lead">{counted(requests, "request")} to {counted(len(sites), "site")}, '
        f"{escape(data['first'][:16].replace('T', ' '))} to "
        f"{escape(data['last'][:16].replace('T', ' '))} UTC. "
        + (
            f'<span class="serious">{counted(len(serious), "kind")} of data reached third parties '
            "with no rule stopping them.</span>"
            if serious
            else "No data reached a third party without a rule acting on it."
        )
        + "</p>",
        '<p class="muted">Values are masked (138****8000) as in shopguard\'s log; this page '
        "fetches nothing and sends nothing.</p>",
        "<h2>What to do next: data sent with no rule acting on it</h2>",
        "<p>Most serious first. Add the rule to the site's file in your shopguard config "
        "(<code>sites/SITE.yaml</code>, with <code>extends: default</code>) — or to the file it "
        "names: an ad pixel's rule goes into <code>sites/third-party-pixels.yaml</code> — then "
        "check it with <code>shopguard policy check</code>.</p>",
        _table(
            ["site", "what", "to host", "who", "where in the request", "times", "rule to add"],
            [
                [
                    r["site"],
                    r["category"],
                    r["host"],
                    _party(r["third_party"]),
                    r["location"],
                    r["count"],
                    rule_text(r),
                ]
                for r in unhandled
            ],
            numeric={5},
            filter_label="filter these rows",
        ),
        "<h2>Who got what (site × host × kind of data)</h2>",
        _heat_map(data),
        "<h2>When (requests carrying personal data, per hour)</h2>",
        _timeline(data),
    ]
    for name, site in sites.items():
        parts.append(
            f"<h2>{escape(name)}: {site['requests']} requests, "
            f"{site['requests_with_personal_data']} with personal data, "
            f"{site['blocked']} blocked</h2>"
        )
        parts.append("<h3>Your own values</h3>")
        parts.append(
            _table(
                ["what", "value", "host", "times", "stopped", "how"],
                [
                    [
                        v["category"],
                        v["preview"],
                        h["host"],
                        h["count"],
                        h["stopped"],
                        ", ".join(h["how"]),
                    ]
                    for v in site["your_values"]
                    for h in v["hosts"]
                ],
                numeric={3, 4},
            )
        )
        parts.append("<h3>What was sent, by kind and host</h3>")
        parts.append(
            _table(
                ["what", "to host", "who", "sent", "stopped", "how", "first", "last"],
                [
                    [
                        s["category"],
                        s["host"],
                        _party(s["third_party"]),
                        s["sent"],
                        s["stopped"],
                        ", ".join(s["how"]),
                        s["first"][:19].replace("T", " "),
                        s["last"][:19].replace("T", " "),
                    ]
                    for s in site["sent"]
                ],
                numeric={3, 4},
                filter_label="filter by host or kind",
            )
        )
        parts.append("<h3>Identifiers that travelled to another host</h3>")
        parts.append(
            _table(
                ["identifier", "first seen", "then sent to", "times"],
                [[x["category"], x["from"], x["to"], x["count"]] for x in site["linked"]],
                numeric={3},
            )
        )
        parts.append("<h3>What the policy did</h3>")
        parts.append(
            _table(
                ["action", "on", "rule", "applied", "times"],
                [
                    [
                        a["action"],
                        a["target"],
                        a["rule"],
                        "yes" if a["applied"] else "no (observe mode)",
                        a["count"],
                    ]
                    for a in site["actions"]
                ],
                numeric={4},
            )
        )
    bad = data["bad_input"]
    skipped = bad["garbage"] + bad["truncated"] + bad["other_schema"]
    if skipped:
        parts.append(
            f'<p class="muted">{skipped} log lines could not be read and were skipped '
            f"(first: {escape(', '.join(bad['where']))}).</p>"
        )
    parts.append(
        f'<p class="muted">shopguard {escape(__version__)}, '
        f"from {len(data['files'])} log files.</p>"
    )
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    print("\n".join(parts), file=out)
