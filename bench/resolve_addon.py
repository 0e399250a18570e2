"""Benchmark-only mitmproxy script: every host name reaches the loopback upstream, with reuse.

Loaded identically into bare `mitmdump` (`-s`) and `shopguard run` (`--set scripts=`) by
`bench/proxy_full.py`. Just before mitmproxy opens an upstream connection, its address becomes
the loopback upstream (plain or TLS port, as the client asked); once the connection is open, the
address it was asked for is put back (stepping around mitmproxy's guard against changing an
open connection's address: the socket stays where it is). mitmproxy reuses a server connection
only for a request to the same address, so restoring it keeps keep-alive working exactly as
without this script (the test routing script leaves the loopback address in place, so every
request opened a new connection). TLS SNI and the Host header are never touched, and
certificates are still verified against the host name. Each host name has its own pair of
upstream ports, as each real host has its own address (mitmproxy also limits how many
connections one client connection holds open to one address). A name no route lists (the
benchmark's out-of-scope shop) goes to the default pair, and so does a connection mitmproxy
passes through without intercepting it (shopguard's tunnel to that shop): the hook is the same,
the TLS is then the client's own, end to end. Routes come from
SHOPGUARD_BENCH_UPSTREAM:
{"hosts": {name: [http_port, https_port]}, "default": [http_port, https_port]}.
"""

import json
import os

from mitmproxy.proxy.server_hooks import ServerConnectionHookData

ROUTES = json.loads(os.environ["SHOPGUARD_BENCH_UPSTREAM"])


class Resolve:
    def __init__(self) -> None:
        self.asked: dict[int, tuple[str, int]] = {}  # connection -> the address it was asked for

    def server_connect(self, data: ServerConnectionHookData) -> None:
        server = data.server
        if server.address is None:
            return
        self.asked[id(server)] = server.address
        https = server.tls or server.address[1] == 443
        ports = ROUTES["hosts"].get(str(server.address[0]).lower(), ROUTES["default"])
        server.address = ("127.0.0.1", ports[1] if https else ports[0])

    def server_connected(self, data: ServerConnectionHookData) -> None:
        asked = self.asked.pop(id(data.server), None)
        if asked is not None:
            # mitmproxy refuses to change the address of an open connection (it guards against
            # an addon redirecting a live one); the connection is already where it must be, and
            # this only restores the name it is known by, so the guard is stepped around
            object.__setattr__(data.server, "address", asked)

    def server_connect_error(self, data: ServerConnectionHookData) -> None:
        self.asked.pop(id(data.server), None)


addons = [Resolve()]
