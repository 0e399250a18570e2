"""`shopguard policy`: check the configuration, explain what happens to a URL, run examples."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from shopguard.cli.common import build_detector, load_or_report, user_dir
from shopguard.cli.exits import EXIT_FOUND, EXIT_OK, EXIT_USAGE, guarded
from shopguard.cli.scan import masked_url
from shopguard.engine.detect import Detector
from shopguard.engine.hosts import overlaps
from shopguard.engine.location import innermost_name
from shopguard.engine.masking import MASK, mask_name, mask_path
from shopguard.engine.pipeline import Context, Result, run
from shopguard.engine.policy import Example
from shopguard.engine.redact import Action
from shopguard.engine.request import PlainRequest
from shopguard.engine.settings import Config

EXAMPLE_SECRET = b"shopguard policy examples"  # stand-ins in examples need no real secret


@guarded
def check(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return EXIT_USAGE
    for site in config.sites:
        state = config.mode_for(site.name) if site.enabled else "disabled"
        policy = site.policy
        rules = (
            len(policy.block)
            + len(policy.strip_params)
            + len(policy.strip_cookies)
            + len(policy.strip_headers)
            + len(policy.strip_fields)
            + len(policy.fields)
            + len(policy.allow)
        )
        decrypts = "  decrypts " + " ".join(g.text for g in site.hosts) if site.enabled else ""
        print(
            f"{site.name:<18} {state:<8} {len(site.hosts):>3} host globs, "
            f"{len(site.first_party):>2} first-party, {rules:>3} rules, "
            f"{len(policy.examples):>2} examples  {site.file}{decrypts}"
        )
    enabled = config.enabled_sites
    shared: dict[str, list[str]] = {}
    for a, first, b, second in overlaps([s.scope for s in enabled]):
        names = shared.setdefault(a.text if a.covers(b) else b.text, [])
        names.extend(n for n in (first.name, second.name) if n not in names)
    for glob, names in shared.items():
        print(
            f"warning: {glob} is listed by {', '.join(names)}: its requests go to the site of "
            f"their Origin/Referer, else to {names[0]}",
            file=sys.stderr,
        )
    _print_decrypted(config, user_dir(args.config), sys.stderr)
    print(f"ok: {len(enabled)} sites enabled, {len(config.files)} files checked")
    return EXIT_OK


def _print_decrypted(config: Config, user: Path, out: TextIO) -> None:
    """Which hosts shopguard decrypts, and why: the enabled sites' hosts (each site's line lists
    them); a `referred_only` site's (the ad pixels') on every website, since the Referer that
    says which page fired them is inside the TLS."""
    print(
        "decrypted (TLS intercepted): only the hosts each enabled site's line lists after "
        "`decrypts`; every other host passes through as an opaque tunnel, never decrypted",
        file=out,
    )
    for site in config.enabled_sites:
        if not site.referred_only:
            continue
        own = Path(site.file) if Path(site.file).is_relative_to(user) else None
        target = own or user / "sites" / f"{site.name}.yaml"
        print(
            f"note: {site.name}'s hosts are decrypted for every website, not only the "
            "marketplaces: the Referer that tells which page fired them is only readable after "
            "decryption; requests not fired from a configured site's page then pass untouched "
            f"and unlogged; to stop: `enabled: false` in {target}",
            file=out,
        )


# -- explain -----------------------------------------------------------------------------------


def _headers(items: list[str], option: str) -> list[tuple[str, str]] | str:
    headers = []
    for item in items:
        name, colon, value = item.partition(":")
        if not colon or not name.strip():
            return f"{option}: expected NAME:VALUE, got {item!r}"
        headers.append((name.strip(), value.strip()))
    return headers


def _request_from_args(args: argparse.Namespace) -> PlainRequest | str:
    headers = _headers(args.header, "--header")
    response = _headers(args.response_header, "--response-header")
    if isinstance(headers, str):
        return headers
    if isinstance(response, str):
        return response
    body = b""
    if args.body is not None:
        if args.body.startswith("@"):
            try:
                body = Path(args.body[1:]).read_bytes()
            except OSError as exc:
                return f"--body: cannot read {args.body[1:]}: {exc.strerror}"
        else:
            body = args.body.encode()
    if not args.url.lower().startswith(("http://", "https://")):
        return f"expected an http:// or https:// URL, got {args.url!r}"
    method = args.method.upper() if args.method else ("POST" if body else "GET")
    return PlainRequest(method, args.url, headers, body, response_headers=response)


@guarded
def explain(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return EXIT_USAGE
    request = _request_from_args(args)
    if isinstance(request, str):
        print(f"shopguard: {request}", file=sys.stderr)
        return EXIT_USAGE
    detector = build_detector(config, args.profile, 0.5)
    if detector is None:
        return EXIT_USAGE
    result = run(Context(config, detector, mode="enforce"), request)
    _print_explanation(result, config, sys.stdout, raw=args.raw)
    return EXIT_OK


def _print_explanation(result: Result, config: Config, out: TextIO, raw: bool = False) -> None:
    site = result.site
    if site is None:
        print(
            f"{result.host}: no configured site handles it; shopguard relays it untouched "
            "(no TLS interception, nothing logged)",
            file=out,
        )
        return
    assert result.routed is not None
    mode = config.mode_for(site.name)
    via = f", fired from a {result.routed.via} page" if result.routed.via else ""
    party = "third party" if result.routed.third_party else "first party"
    print(f"site: {site.name} ({site.file}), mode {mode}, {party}{via}", file=out)
    print(f"inspection: {result.inspection}", file=out)
    print("findings:" if result.findings else "findings: none", file=out)
    for finding in result.findings:
        how = f" [{finding.transform}]" if finding.transform else ""
        print(
            f"  {finding.category:<13} {finding.location}{how}  {finding.detector} "
            f"{finding.confidence:.2f}  {finding.preview}",
            file=out,
        )
    outcome = result.outcome
    print("actions:" if outcome.actions else "actions: none", file=out)
    for action in outcome.actions:
        print(f"  {_action_text(action)}", file=out)
    if mode != "enforce" and outcome.actions:
        print(
            f"  (the site is in {mode} mode: these are only logged until it is enforced)", file=out
        )
    request = result.request
    shown = "" if raw else " (values masked; --raw shows the values)"
    print(f"request as it would leave (enforce mode){shown}:", file=out)
    if outcome.block_status is not None:
        print(f"  not sent: answered by shopguard with {outcome.block_status}", file=out)
        return
    names = result.masked_names
    url = outcome.url if raw else masked_url(outcome.url, result.findings, names)
    print(f"  {request.method} {url}", file=out)
    content_type = ""
    for name, value in outcome.headers:
        content_type = value if name.lower() == "content-type" else content_type
        print(f"  {name}: {value if raw else _masked_header(name, value, names)}", file=out)
    body = outcome.body if outcome.body is not None else request.body
    if body:
        print("", file=out)
        text = body.decode("utf-8", "replace")
        print("  " + (text if raw else _masked_body(text, content_type, names))[:4000], file=out)


# Headers whose values describe the request, never the person: shown as they are.
_DESCRIPTIVE = re.compile(
    r"content-(?:type|length|encoding)|accept(?:-encoding)?|sec-fetch-[a-z]+", re.IGNORECASE
)


def _masked_header(name: str, value: str, names: Mapping[str, str]) -> str:
    """A header's value with its values masked: cookie values, a URL's as a logged path's."""
    if not value or _DESCRIPTIVE.fullmatch(name):
        return value
    lower = name.lower()
    if lower == "cookie":
        pairs = [pair.strip().partition("=") for pair in value.split(";")]
        return "; ".join(f"{mask_name(n, names)}={MASK}" if eq else MASK for n, eq, _ in pairs)
    if lower in ("referer", "origin") and value.lower().startswith(("http://", "https://")):
        return masked_url(value, [], names)
    return MASK


def _masked_body(text: str, content_type: str, names: Mapping[str, str]) -> str:
    """A body with its values masked: a JSON document's strings and numbers, a form's values (as
    a query's), anything else only described."""
    kind = content_type.partition(";")[0].strip().lower()
    if "json" in kind or text.lstrip().startswith(("{", "[")):
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            pass
        else:
            return json.dumps(_masked_json(document, names), ensure_ascii=False)
    if kind == "application/x-www-form-urlencoded":
        return mask_path(f"?{text}", (), names)[1:]
    return f"({len(text.encode())} bytes of {kind or 'body'}; --raw shows them)"


def _masked_json(value: Any, names: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {mask_name(key, names): _masked_json(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked_json(item, names) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    return MASK


def _action_text(action: Action) -> str:
    parts = [action.action, action.target]
    if action.category:
        parts.append(f"({action.category})")
    if action.status:
        parts.append(str(action.status))
    parts.append(action.rule or "built in")
    if not action.applied and action.reason:
        parts.append(f"NOT DONE: {action.reason}")
    elif action.reason:
        parts.append(f"because {action.reason}")
    return "  ".join(parts)


# -- test --------------------------------------------------------------------------------------


def run_example(config: Config, site_name: str, example: Example) -> list[str]:
    """What is wrong with `example` under its site's policy (empty: it passes)."""
    detector = Detector(EXAMPLE_SECRET)  # no profile: examples must not depend on anyone's
    request = PlainRequest(
        example.method,
        example.url,
        list(example.headers),
        (example.body or "").encode(),
    )
    result = run(Context(config, detector, mode="enforce"), request)
    if result.site is None or result.site.name != site_name:
        where = result.site.name if result.site else "no site"
        wanted = config.site(site_name)
        if result.site is not None and wanted and any(g.matches(result.host) for g in wanted.hosts):
            return [
                f"the request belongs to {where}, not {site_name}: {result.host} is shared, "
                f"give the example the Referer of a {site_name} page"
            ]
        return [f"the request belongs to {where}, not {site_name}"]
    outcome = result.outcome
    problems = []
    expect = example.expect
    action = "block" if outcome.block_status is not None else "pass"
    if "action" in expect and expect["action"] != action:
        problems.append(f"expected {expect['action']}, got {action}")
    if "status" in expect and outcome.block_status != expect["status"]:
        problems.append(f"expected status {expect['status']}, got {outcome.block_status or 'none'}")
    done = [a for a in outcome.actions if a.applied]

    def names(act: Action) -> set[str]:
        return {act.target, innermost_name(act.target), act.category or ""}

    for kind, verb in (("strips", "strip"), ("replaces", "replace")):
        for wanted in expect.get(kind, []):
            if not any(a.action == verb and wanted in names(a) for a in done):
                problems.append(f"expected a {verb} of {wanted}")
    found = {f.category for f in result.findings}
    for category in expect.get("findings", []):
        if category not in found:
            problems.append(f"expected a {category} finding")
    return problems


def _unknown_sites(config: Config, names: list[str]) -> str:
    """Why some of the sites named on the command line have no examples to run ("" if none)."""
    known = {site.name: site for site in config.sites}
    for name in names:
        site = known.get(name)
        if site is None:
            return f"no site named {name} (the sites: {', '.join(sorted(known))})"
        if not site.enabled:
            return f"{name} is disabled (enabled: false in {site.file}): its examples cannot run"
    return ""


@guarded
def test(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return EXIT_USAGE
    problem = _unknown_sites(config, args.site)
    if problem:
        print(f"shopguard: policy test: {problem}", file=sys.stderr)
        return EXIT_USAGE
    total = failed = 0
    for site in config.enabled_sites:
        if args.site and site.name not in args.site:
            continue
        for example in site.policy.examples:
            total += 1
            problems = run_example(config, site.name, example)
            if problems:
                failed += 1
                print(f"FAIL {example.where}: {example.method} {example.url}")
                for problem in problems:
                    print(f"     {problem}")
            elif args.verbose:
                print(f"ok   {example.where}: {example.method} {example.url}")
    print(f"{total - failed} of {total} examples pass" + (f", {failed} fail" if failed else ""))
    return EXIT_FOUND if failed else EXIT_OK
