"""`shopguard run`: mitmproxy embedded with the shopguard addons, quiet, on loopback."""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import logging
import signal
import sys
from pathlib import Path

from mitmproxy import exceptions, options
from mitmproxy.master import Master

from shopguard import __version__, paths
from shopguard.chain import make_addons
from shopguard.cli.ca import prepare_ca
from shopguard.cli.common import load_or_report
from shopguard.cli.exits import EXIT_OK, EXIT_USAGE
from shopguard.runtime import Runtime


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def has_proxyauth(sets: list[str]) -> bool:
    return any(s.partition("=")[0] == "proxyauth" and s.partition("=")[2] for s in sets)


class Banner:
    """Prints where the proxy listens and what it does, once it is up."""

    def __init__(self, rt: Runtime, master: Master) -> None:
        self.rt = rt
        self.master = master

    def running(self) -> None:
        config = self.rt.config
        assert config is not None and self.rt.audit is not None
        proxy = self.master.addons.get("proxyserver")
        addrs = proxy.listen_addrs() if proxy else []
        lines = [f"shopguard {__version__}"]
        lines += [f"  listening on http://{a[0]}:{a[1]}" for a in addrs]
        user = Path(self.master.options.shopguard_config or paths.user_config_dir())
        lines.append(f"  defaults: {paths.shipped_config_dir()}")
        lines.append(f"  your config: {user}" + ("" if user.is_dir() else " (none yet)"))
        for site in config.enabled_sites:
            lines.append(f"  site {site.name:<12} {self.rt.mode_for(site.name)}")
        confdir = self.master.options.confdir
        lines.append(f"  CA certificate: {confdir}/mitmproxy-ca-cert.pem  (see `shopguard ca`)")
        lines.append(f"  log: {self.rt.audit.path}")
        print("\n".join(lines), flush=True)


async def serve(args: argparse.Namespace) -> int:
    confdir = paths.private_dir(paths.confdir())
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
    rt = Runtime()
    master.addons.add(*make_addons(rt), Banner(rt, master))
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
        print(f"shopguard: {exc}", file=sys.stderr)
        return EXIT_USAGE

    # configuration, profile digests and mitmproxy's own start-up objects live as long as the
    # process: keep the cyclic garbage collector from scanning them again and again
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, master.shutdown)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        await master.run()
    except SystemExit:  # mitmproxy's errorcheck: a startup error (e.g. port in use) was printed
        return EXIT_USAGE
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    remote_ok = args.allow_remote and has_proxyauth(args.set)
    if not is_loopback(args.listen_host) and not remote_ok:
        print(
            f"shopguard: refusing to listen on {args.listen_host}: other machines could use "
            "the proxy and read its traffic. Use 127.0.0.1, or pass --allow-remote together "
            "with --set proxyauth=USER:PASSWORD.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if load_or_report(args.config) is None:
        return EXIT_USAGE
    logging.getLogger().setLevel(logging.INFO)
    try:
        return asyncio.run(serve(args))
    except KeyboardInterrupt:
        return EXIT_OK
