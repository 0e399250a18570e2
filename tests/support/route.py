"""Test-only mitmproxy script: send every upstream connection to the fake marketplace on loopback.

Loaded into `shopguard run` with `--set scripts=tests/support/route.py`. The request keeps its
Host header and TLS SNI, so scope and policies see the real marketplace names; the connection
goes to 127.0.0.1 only (hosts the fake market does not know get its 404), never to the network.
Routes come from the SHOPGUARD_TEST_ROUTES environment variable: {"http": port, "https": port},
and optionally "closed": a loopback port nothing listens on, where names beginning with
`unreachable.` go (a site that is down).
"""

import json
import os

from mitmproxy.proxy.server_hooks import ServerConnectionHookData

ROUTES = json.loads(os.environ["SHOPGUARD_TEST_ROUTES"])


class Route:
    def server_connect(self, data: ServerConnectionHookData) -> None:
        server = data.server
        port = server.address[1] if server.address else 443
        # TLS or not as the client asked: a replayed flow saved by a routed proxy names the fake
        # market's own address, not port 443
        https = server.tls or port == 443
        name = server.address[0] if server.address else ""
        if "closed" in ROUTES and str(name).startswith("unreachable."):
            server.address = ("127.0.0.1", ROUTES["closed"])
            return
        server.address = ("127.0.0.1", ROUTES["https"] if https else ROUTES["http"])


addons = [Route()]
