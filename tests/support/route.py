"""Test-only mitmproxy script: send every upstream connection to the fake marketplace on loopback.

Loaded into `shopguard run` with `--set scripts=tests/support/route.py`. The request keeps its
Host header and TLS SNI, so scope and policies see the real marketplace names; the connection
goes to 127.0.0.1 only (hosts the fake market does not know get its 404), never to the network.
Routes come from the SHOPGUARD_TEST_ROUTES environment variable: {"http": port, "https": port},
and optionally "closed": a loopback port nothing listens on, where names beginning with
`unreachable.` go (a site that is down).

Once open, a connection names the address it was asked for again: mitmproxy reuses a server
connection only for requests to the address it names, so with the loopback address left in place
every request on a kept-alive client connection opened one more upstream connection, and since
mitmproxy lets a client connection hold at most 5 open connections to one address (the loopback
one, for all of them), the sixth request waited until the client gave up. That limit still
holds for a client connection that keeps connections to more than 5 hosts open at once.
"""

import json
import os

from mitmproxy.http import HTTPFlow
from mitmproxy.proxy.server_hooks import ServerConnectionHookData

ROUTES = json.loads(os.environ["SHOPGUARD_TEST_ROUTES"])


class Route:
    def __init__(self) -> None:
        self.named: dict[int, tuple[str, int]] = {}  # connection -> the address it was asked for

    def server_connect(self, data: ServerConnectionHookData) -> None:
        server = data.server
        port = server.address[1] if server.address else 443
        # TLS or not as the client asked: a replayed flow saved by a routed proxy names the fake
        # market's own address, not port 443
        https = server.tls or port == 443
        name = server.address[0] if server.address else ""
        if server.address:
            self.named[id(server)] = server.address
        if "closed" in ROUTES and str(name).startswith("unreachable."):
            server.address = ("127.0.0.1", ROUTES["closed"])
            return
        server.address = ("127.0.0.1", ROUTES["https"] if https else ROUTES["http"])

    def requestheaders(self, flow: HTTPFlow) -> None:
        """A request inside a tunnel takes its host from the tunnel's connection, which now
        names 127.0.0.1: it gets back the name the tunnel was opened for, as without routing
        (this script runs before shopguard's addons)."""
        named = self.named.get(id(flow.server_conn))
        if named is not None and flow.request.host == "127.0.0.1":
            flow.request.data.host = named[0]

    def server_connected(self, data: ServerConnectionHookData) -> None:
        named = self.named.get(id(data.server))
        if named is not None:
            # past mitmproxy's guard against changing the address of an open connection: the
            # socket stays connected to the fake market, only the name the reuse check (and a
            # saved flow) sees changes back
            object.__setattr__(data.server, "address", named)

    def server_disconnected(self, data: ServerConnectionHookData) -> None:
        self.named.pop(id(data.server), None)

    def server_connect_error(self, data: ServerConnectionHookData) -> None:
        self.named.pop(id(data.server), None)


addons = [Route()]
