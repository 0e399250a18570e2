"""`shopguard` command line: argument parsing and dispatch only."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from shopguard import __version__
from shopguard.cli.exits import EXIT_OK, EXIT_USAGE


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="DIR",
        type=Path,
        help="config directory laid over the shipped defaults "
        "(default: the platform config directory, e.g. ~/.config/shopguard)",
    )


def _profile_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        metavar="FILE",
        type=Path,
        help="your own known values (default: the `profile` setting, else profile.yaml in the "
        "platform config directory)",
    )


def _logs_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "logs",
        nargs="*",
        type=Path,
        metavar="LOG",
        help="flow logs, plain or .gz (default: the configured log and its rotations)",
    )


def _confidence(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shopguard",
        description="See and stop the personal data your browser sends to online marketplaces.",
    )
    parser.add_argument("--version", action="version", version=f"shopguard {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="start the proxy")
    _config_arg(run)
    run.add_argument("--listen-host", default="127.0.0.1", help="default: 127.0.0.1")
    run.add_argument(
        "--listen-port", type=int, default=8080, help="default: 8080; 0 picks a free port"
    )
    run.add_argument("--mode", choices=("observe", "enforce"), help="override every site's mode")
    run.add_argument("--log", type=Path, metavar="PATH", help="JSON-lines log file")
    _profile_arg(run)
    run.add_argument("--web", action="store_true", help="also open mitmweb's web interface")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a mitmproxy option (e.g. scripts=extra.py, proxyauth=user:pass); repeatable",
    )
    run.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow listening on another address than loopback (--listen-host, --set "
        "listen_host, a mode's @HOST:PORT): needs --set proxyauth=USER:PASSWORD (or "
        "@htpasswd, ldap…; not `any`), or WireGuard mode",
    )

    scan = commands.add_parser("scan", help="list the personal data in saved captures")
    scan.add_argument("files", nargs="+", type=Path, metavar="FILE", help="HAR or mitmproxy flows")
    _config_arg(scan)
    _profile_arg(scan)
    scan.add_argument("--format", choices=("table", "jsonl", "json"), default="table")
    scan.add_argument(
        "--min-confidence",
        type=_confidence,
        default=0.5,
        metavar="X",
        help="report findings at or above this confidence (default 0.5)",
    )
    scan.add_argument(
        "--fail-on",
        metavar="CATEGORY,…",
        help="exit 1 when one of these categories is found (e.g. phone,email)",
    )

    report = commands.add_parser(
        "report", help="what each site learnt about you, from shopguard's own log"
    )
    _logs_arg(report)
    report.add_argument("--since", metavar="WHEN", help="e.g. 2h, 7d, 2026-11-26 (local time)")
    report.add_argument("--until", metavar="WHEN", help="as --since; end in Z for UTC")
    report.add_argument("--site", metavar="NAME", help="only this site")
    report.add_argument(
        "--session", choices=("last", "all"), default="all", help="the last proxy run, or all"
    )
    report.add_argument(
        "--format",
        choices=("table", "markdown", "json", "html"),
        default="table",
        help="default: table; html: one page that opens offline",
    )
    report.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here")
    _config_arg(report)

    purge = commands.add_parser("purge", help="remove old lines from shopguard's log")
    _logs_arg(purge)
    purge.add_argument("--older-than", metavar="AGE", help="e.g. 30d, 12h, or a date (local time)")
    purge.add_argument("--site", metavar="NAME", help="only that site's lines")
    purge.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")
    _config_arg(purge)

    policy = commands.add_parser("policy", help="check, explain and test the site policies")
    policy_commands = policy.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    check = policy_commands.add_parser("check", help="validate config files and list the sites")
    _config_arg(check)
    explain = policy_commands.add_parser(
        "explain", help="which site, findings and rules apply to a URL, and what would leave"
    )
    explain.add_argument("url", metavar="URL")
    explain.add_argument("--method", help="default: GET, or POST with --body")
    explain.add_argument(
        "--header", action="append", default=[], metavar="NAME:VALUE", help="repeatable"
    )
    explain.add_argument("--body", metavar="@FILE|TEXT", help="request body, @file to read one")
    explain.add_argument(
        "--response-header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="a header of the response (e.g. Set-Cookie: cna=…: what it sets); repeatable",
    )
    explain.add_argument(
        "--raw",
        action="store_true",
        help="show the request's values as they would leave (default: masked, as in the log)",
    )
    _config_arg(explain)
    _profile_arg(explain)
    test = policy_commands.add_parser("test", help="run every site's examples")
    test.add_argument("site", nargs="*", help="only these sites")
    test.add_argument("-v", "--verbose", action="store_true", help="list passing examples too")
    _config_arg(test)
    suggest = policy_commands.add_parser(
        "suggest", help="rules that would stop what the log shows leaving unhandled"
    )
    _logs_arg(suggest)
    suggest.add_argument("--site", metavar="NAME", help="only this site")
    suggest.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the patch here")
    suggest.add_argument(
        "--apply", action="store_true", help="write the rules into your site files"
    )
    suggest.add_argument(
        "--fail-if-any", action="store_true", help="exit 1 when there is something to suggest"
    )
    _config_arg(suggest)
    imports = policy_commands.add_parser(
        "import", help="turn a ClearURLs or Adblock-syntax list into a site's policy file"
    )
    imports.add_argument("kind", choices=("clearurls", "abp"), help="the list's format")
    imports.add_argument("file", type=Path, metavar="FILE", help="data.min.json or a filter list")
    imports.add_argument("--site", required=True, help="the site the rules are for, e.g. taobao")
    imports.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="write here (default: print)"
    )
    _config_arg(imports)

    ca = commands.add_parser(
        "ca", help="where shopguard's CA is, how to trust and remove it; a new or constrained one"
    )
    ca_action = ca.add_mutually_exclusive_group()
    ca_action.add_argument(
        "--path", action="store_true", help="print only the CA certificate's path"
    )
    ca_action.add_argument(
        "--renew", action="store_true", help="replace the CA with a new one (trust it anew)"
    )
    ca_action.add_argument(
        "--constrained",
        action="store_true",
        help="replace the CA with one that can certify only the configured sites' domains",
    )
    ca_action.add_argument(
        "--remove",
        action="store_true",
        help="list what removes the CA, shopguard's state and its logs (an uninstall)",
    )
    ca.add_argument("--yes", action="store_true", help="with --remove: also delete those files now")
    _config_arg(ca)

    pac = commands.add_parser("pac", help="print a PAC file sending only the configured sites")
    _config_arg(pac)
    pac.add_argument("--listen-host", default="127.0.0.1")
    pac.add_argument("--listen-port", type=int, default=8080)

    commands.add_parser("addon-path", help="print the script for `mitmdump -s`")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from shopguard.cli.run import run

        return run(args)
    if args.command == "scan":
        from shopguard.cli.scan import scan

        return scan(args)
    if args.command == "report":
        from shopguard.cli.report import report_command

        return report_command(args)
    if args.command == "purge":
        from shopguard.cli.purge import purge_command

        return purge_command(args)
    if args.command == "policy":
        from shopguard.cli import policy, policy_import, suggest

        actions = {
            "check": policy.check,
            "explain": policy.explain,
            "test": policy.test,
            "import": policy_import.import_rules,
            "suggest": suggest.suggest_command,
        }
        return actions[args.policy_command](args)
    if args.command == "ca":
        from shopguard.cli.ca import show_ca

        return show_ca(args)
    if args.command == "pac":
        from shopguard.cli.ca import print_pac

        return print_pac(args)
    if args.command == "addon-path":
        from shopguard import paths

        print(paths.addon_script())
        return EXIT_OK
    return EXIT_USAGE  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
