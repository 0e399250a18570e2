"""`shopguard run`: mitmproxy embedded with the shopguard addons, quiet, on loopback."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import ipaddress
import logging
import shutil
import signal
import stat
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from mitmproxy import ctx, exceptions, options
from mitmproxy.master import Master
from mitmproxy.proxy.mode_specs import (
    LocalMode,
    ProxyMode,
    RegularMode,
    Socks5Mode,
    TunMode,
    UpstreamMode,
    WireGuardMode,
)

from shopguard import __version__, paths
from shopguard.chain import make_addons
from shopguard.cli.ca import prepare_ca
from shopguard.cli.common import load_or_report
from shopguard.cli.exits import EXIT_OK, EXIT_USAGE
from shopguard.dispatch import HookDispatch
from shopguard.lines import unhandled
from shopguard.runtime import Runtime

# the options that say where the proxy (or mitmweb's interface) listens, and who may use it
LISTENING_OPTIONS = frozenset({"listen_host", "mode", "proxyauth", "web_host"})
# modes in which `proxyauth` is checked before anything is relayed (at the CONNECT request, at
# the SOCKS handshake); a reverse or transparent proxy relays hosts no site lists as opaque
# tunnels, past any check, and DNS has no credentials
AUTHENTICATED_MODES = (RegularMode, UpstreamMode, Socks5Mode)
SOCKETLESS_MODES = (LocalMode, TunMode)  # they capture this machine's traffic, listen nowhere
NO_CREDENTIALS = (
    "Listen on 127.0.0.1, or pass --allow-remote together with credentials that are checked: "
    "--set proxyauth=USER:PASSWORD (or @HTPASSWD-FILE, or ldap…; `any` accepts everyone)."
)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checks_credentials(proxyauth: str | None) -> bool:
    """Whether mitmproxy checks the credentials `proxyauth` names: a user and a password, an
    htpasswd file (`@path`) or an LDAP server — not `any`, which accepts every one."""
    if not proxyauth or proxyauth == "any":
        return False
    if proxyauth.startswith(("@", "ldap")):
        return True
    user, colon, password = proxyauth.partition(":")
    return bool(colon and user and password)


def listen_refusal(
    modes: Sequence[str],
    listen_host: str,
    proxyauth: str | None,
    allow_remote: bool,
    web_host: str | None = None,
) -> str | None:
    """Why shopguard must not listen as `modes` and `listen_host` say (None: it may).

    Each mode is read by mitmproxy's own parser, and listens where mitmproxy would have it
    listen: the address of its spec, else `listen_host` ("" is every interface)."""
    for spec in modes:
        try:
            mode = ProxyMode.parse(spec)
        except ValueError as exc:
            return f"invalid mode {spec!r}: {exc}"
        if isinstance(mode, SOCKETLESS_MODES):
            continue
        host = mode.listen_host(listen_host)
        if is_loopback(host):
            continue
        where = host or "every interface"
        if isinstance(mode, WireGuardMode):
            if allow_remote:  # only a peer holding the client's key gets in
                continue
            return (
                f"refusing to listen on {where} ({mode.description}, `{spec}`): other machines "
                "could reach it. Listen on 127.0.0.1, or pass --allow-remote (WireGuard's keys "
                "then decide who may use it)."
            )
        if not isinstance(mode, AUTHENTICATED_MODES):
            return (
                f"refusing to listen on {where} ({mode.description}, `{spec}`): other machines "
                "could use it, and proxy authentication does not protect this mode. "
                "Listen on 127.0.0.1."
            )
        if not (allow_remote and checks_credentials(proxyauth)):
            return (
                f"refusing to listen on {where} ({mode.description}, `{spec}`): other machines "
                f"could use the proxy and read its traffic. {NO_CREDENTIALS}"
            )
    if web_host is not None and not is_loopback(web_host) and not allow_remote:
        return (
            f"refusing to serve the web interface on {web_host or 'every interface'}: it "
            "shows every flow in clear. Keep web_host at 127.0.0.1, or pass --allow-remote "
            "(its token or web_password then decides who may open it)."
        )
    return None


def listening_options(listen_host: str, sets: Sequence[str]) -> options.Options:
    """The listening options as `--listen-host` and the `--set`s give them, read as mitmproxy
    reads them (a later `--set` wins; several `mode`s make a list); raises OptionsError."""
    probe = options.Options(listen_host=listen_host)
    probe.add_option("proxyauth", str | None, None, "")  # (the option of mitmproxy's addon)
    probe.add_option("web_host", str, "127.0.0.1", "")
    probe.set(*(spec for spec in sets if spec.partition("=")[0] in LISTENING_OPTIONS))
    return probe


def refusal_of(opts: options.Options, allow_remote: bool, web: bool) -> str | None:
    return listen_refusal(
        opts.mode,
        opts.listen_host,
        opts.proxyauth if "proxyauth" in opts else None,
        allow_remote,
        opts.web_host if web and "web_host" in opts else None,
    )


class ListenGuard:
    """Refuses an option change that would expose the proxy (a script, mitmweb's options
    editor), as the command line is refused. First in the chain: the change is rolled back
    before mitmproxy's proxy server sees it."""

    def __init__(self, allow_remote: bool, web: bool = False) -> None:
        self.allow_remote = allow_remote
        self.web = web

    def configure(self, updated: set[str]) -> None:
        if updated & LISTENING_OPTIONS:
            problem = refusal_of(ctx.options, self.allow_remote, self.web)
            if problem is not None:
                raise exceptions.OptionsError(problem)


class HeldStartupErrors(logging.Filter):
    """Keeps mitmproxy's message about a server that could not start off the terminal: it
    names mitmproxy's command line (`--mode regular@8082`), not shopguard's. `Session` says
    it in shopguard's terms."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


SERVER_LOGGER = logging.getLogger("mitmproxy.addons.proxyserver")
HELD_ERRORS = HeldStartupErrors()


def listen_failure(server: Any, opts: options.Options) -> str:
    """A server that could not start, as shopguard's command line would fix it."""
    mode, exc = server.mode, server.last_exception
    host = mode.listen_host(opts.listen_host) or "*"
    port = mode.listen_port(opts.listen_port)
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        fix = (
            f"use another port: --listen-port {port + 1}, or --listen-port 0 for any free one"
            if mode.custom_listen_port is None
            else f"change the port in the mode `{mode.full_spec}`"
        )
        return (
            f"shopguard: cannot listen on {host}:{port}: the port is in use (by another "
            f"program, or another shopguard); {fix}."
        )
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"shopguard: cannot start the {mode.description} on {host}:{port}: {reason}"


def user_path(path: Path) -> str:
    """`path` with the home directory written `~`, as a user would type it."""
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


class LiveStatus:
    """On a terminal, one status line on stderr, rewritten in place (at most twice a second):
    per site its flows, those with personal data, those blocked, and values that left with no
    rule acting on them. Nothing when stderr is not a terminal."""

    EVERY = 0.5  # seconds between two redraws

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.counts: dict[str, list[int]] = {}  # site -> flows, with data, blocked, unhandled
        self.drawn = 0.0

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        if event != "flow":
            return
        site = str(fields.get("via") or fields.get("site"))
        counts = self.counts.setdefault(site, [0, 0, 0, 0])
        findings, actions = fields.get("findings") or [], fields.get("actions") or []
        counts[0] += 1
        counts[1] += bool(findings)
        counts[2] += any(a.get("action") == "block" and a.get("applied") for a in actions)
        counts[3] += sum(unhandled(f, actions) for f in findings)
        now = time.monotonic()
        if now - self.drawn >= self.EVERY:
            self.drawn = now
            self.draw()

    def line(self) -> str:
        return " | ".join(
            f"{site} {n} flows, {data} with data, {blocked} blocked, {leaks} unhandled"
            for site, (n, data, blocked, leaks) in sorted(self.counts.items())
        )

    def draw(self) -> None:
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.out.write("\r\x1b[2K" + self.line()[:width])
        self.out.flush()

    def end(self) -> None:
        if self.counts:
            self.draw()
            self.out.write("\n")
            self.out.flush()


class Session:
    """`shopguard run` from the moment it listens to its stop: the log's first lines (held
    until then, so that a proxy that never listens writes nothing), the banner, the key files'
    modes, and why it stops (`proxy_stopped`, which the recorder writes, says it)."""

    def __init__(self, rt: Runtime, master: Master) -> None:
        self.rt = rt
        self.master = master
        self.exit_code = EXIT_OK
        self.status: LiveStatus | None = None

    def stop(self, reason: str) -> None:
        self.rt.stop_reason = reason
        self.master.shutdown()

    def fail(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)
        self.exit_code = EXIT_USAGE
        self.master.shutdown()

    def running(self) -> None:
        SERVER_LOGGER.removeFilter(HELD_ERRORS)
        proxy = self.master.addons.get("proxyserver")
        failed = [s for s in proxy.servers if s.last_exception is not None] if proxy else []
        if failed:
            for server in failed:
                print(listen_failure(server, self.master.options), file=sys.stderr)
            self.fail("shopguard: the proxy did not start; nothing was logged.")
            return
        audit = self.rt.audit
        assert audit is not None
        try:
            self.rt.release_lines()
        except OSError as exc:
            self.fail(f"shopguard: cannot write the shopguard log {audit.path}: {exc}")
            return
        paths.protect_keys(Path(self.master.options.confdir))  # (WireGuard's, written now)
        print("\n".join(self.banner()), flush=True)
        if sys.stderr.isatty():
            self.status = LiveStatus(sys.stderr)
            self.rt.observers.append(self.status)
        if warning := log_dir_warning(audit):
            print(warning, file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.status is not None:
            self.status.end()

    def banner(self) -> list[str]:
        config = self.rt.config
        assert config is not None and self.rt.audit is not None
        proxy = self.master.addons.get("proxyserver")
        lines = [f"shopguard {__version__}"]
        for server in proxy.servers if proxy else []:
            scheme = "http" if isinstance(server.mode, (RegularMode, UpstreamMode)) else None
            for address in server.listen_addrs:
                where = f"{address[0]}:{address[1]}"
                lines.append(
                    f"  listening on http://{where}"
                    if scheme
                    else f"  listening on {where} ({server.mode.description})"
                )
        user = Path(self.master.options.shopguard_config or paths.user_config_dir())
        lines.append(f"  defaults: {paths.shipped_config_dir()}")
        lines.append(f"  your config: {user}" + ("" if user.is_dir() else " (none yet)"))
        lines += self.profile_lines()
        lines.append("  decrypted and logged: these sites' hosts only (all others pass encrypted):")
        pixels = []
        for site in config.enabled_sites:
            hosts = " ".join(g.text for g in site.hosts)
            head = f"  site {site.name:<12} {self.rt.mode_for(site.name):<8} "
            indent = " " * len(head)
            lines += textwrap.wrap(hosts, 100, initial_indent=head, subsequent_indent=indent)
            if site.referred_only:
                pixels.append(site)
        for site in pixels:
            own = user / "sites" / Path(site.file).name
            lines += textwrap.wrap(
                f"{site.name}: these ad-pixel hosts are decrypted for every website, because "
                "only inside the connection does the Referer tell which page fired them; only "
                f"those a marketplace page fired are logged. To stop: a file {user_path(own)} "
                "with `enabled: false`.",
                100,
                initial_indent="  ",
                subsequent_indent="    ",
            )
        confdir = self.master.options.confdir
        lines.append(f"  CA certificate: {confdir}/mitmproxy-ca-cert.pem  (see `shopguard ca`)")
        lines.append(f"  log: {self.rt.audit.path}")
        return lines

    def profile_lines(self) -> list[str]:
        inspector = self.master.addons.get("inspector")
        path = getattr(inspector, "profile_path", None) or paths.default_profile_path()
        detector = self.rt.detector
        if detector is not None and detector.matcher is not None:
            return [f"  profile: {path}"]
        return textwrap.wrap(
            f"profile: none — your own name, phone, e-mail… are found in any form (also hashed) "
            f"once you list them in {user_path(Path(path))} (see Profile in the README); until "
            "then only patterns find personal data",
            100,
            initial_indent="  ",
            subsequent_indent="    ",
        )


def log_dir_warning(audit: Any) -> str | None:
    """A warning when the log is in a directory of the user's that others may look into."""
    directory = audit.path.parent
    if not audit.file.is_regular or directory in own_directories():
        return None
    try:
        mode = stat.S_IMODE(directory.stat().st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return (
        f"shopguard: warning: the log is in {directory}, a directory shopguard did not create, "
        f"which others can open (mode {mode:o}): the log itself is private (mode 600), but to "
        f"keep even its name to yourself, run: chmod 700 {directory}"
    )


def own_directories() -> list[Path]:
    """shopguard's own directories: its state, its CA, the default log directory."""
    return [paths.state_dir(), paths.confdir(), paths.default_log_path().parent]


def build_master(args: argparse.Namespace) -> tuple[Master, Runtime, Session]:
    """mitmproxy with the shopguard addons, behind the guard of where it listens."""
    confdir = paths.confdir()
    opts = options.Options(
        listen_host=args.listen_host, listen_port=args.listen_port, confdir=str(confdir)
    )
    opts.update(**prepare_ca(confdir))  # shopguard's own CA, before mitmproxy makes one
    master: Master
    if args.web:
        from mitmproxy.tools.web.master import WebMaster

        master = WebMaster(opts)
    else:
        from mitmproxy.tools.dump import DumpMaster

        master = DumpMaster(opts, with_dumper=False)
    guard = ListenGuard(args.allow_remote, args.web)
    master.addons.chain.insert(0, master.addons.register(guard))
    rt = Runtime()
    rt.hold_lines()
    session = Session(rt, master)
    master.addons.add(*make_addons(rt), session)
    HookDispatch.install(master.addons)
    return master, rt, session


async def serve(args: argparse.Namespace) -> int:
    master, _, session = build_master(args)
    opts = master.options
    SERVER_LOGGER.addFilter(HELD_ERRORS)
    try:
        opts.update(
            termlog_verbosity="info" if args.web else "warn",  # --web: print the UI's URL
            shopguard_mode=args.mode or "",
            shopguard_log=str(args.log) if args.log else "",
            shopguard_profile=str(args.profile) if args.profile else "",
            shopguard_config=str(args.config) if args.config else "",
        )
        if args.set:
            opts.set(*args.set)
    except exceptions.OptionsError as exc:
        SERVER_LOGGER.removeFilter(HELD_ERRORS)
        print(f"shopguard: {exc}", file=sys.stderr)
        return EXIT_USAGE

    # configuration, profile digests and mitmproxy's own start-up objects live as long as the
    # process: keep the cyclic garbage collector from scanning them again and again
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, session.stop, sig.name)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        await master.run()
    except SystemExit:  # mitmproxy's errorcheck: a startup error (e.g. a script's) was printed
        return EXIT_USAGE
    finally:
        SERVER_LOGGER.removeFilter(HELD_ERRORS)
    return session.exit_code


def secure_own_files() -> str | None:
    """shopguard's directories private (700) also when they exist, its keys 600; else why not."""
    try:
        for directory in own_directories():
            paths.own_dir(directory)
        paths.protect_keys(paths.confdir())
    except OSError as exc:
        return f"shopguard: cannot make its own files private: {exc}"
    return None


def run(args: argparse.Namespace) -> int:
    try:
        listening = listening_options(args.listen_host, args.set)
    except exceptions.OptionsError as exc:
        print(f"shopguard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    problem = refusal_of(listening, args.allow_remote, args.web)
    if problem is not None:
        print(f"shopguard: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if load_or_report(args.config) is None:
        return EXIT_USAGE
    if problem := secure_own_files():
        print(problem, file=sys.stderr)
        return EXIT_USAGE
    logging.getLogger().setLevel(logging.INFO)
    try:
        return asyncio.run(serve(args))
    except KeyboardInterrupt:
        return EXIT_OK
