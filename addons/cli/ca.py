"""`shopguard ca` and `shopguard pac`: trusting the CA; proxying only the marketplaces."""

from __future__ import annotations

import argparse
import base64
import hashlib
import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from mitmproxy import certs

from shopguard import paths
from shopguard.cli.common import load_or_report
from shopguard.cli.exits import EXIT_OK, EXIT_USAGE

CA_NAME = "mitmproxy"  # mitmproxy's file prefix: mitmproxy-ca-cert.pem etc.

TRUST_HELP = """\
How to trust it (only on devices you own; remove it when you stop using shopguard):
  Firefox      Settings > Privacy & Security > Certificates > View Certificates > Authorities >
               Import... > {pem} > tick "Trust this CA to identify websites".
               Remove: same list, select "mitmproxy" > Delete or Distrust.
  Chromium /   Linux: Settings > Privacy and security > Security > Manage certificates >
  Chrome       Authorities > Import > {pem} > "Trust this certificate for identifying websites".
               Or, for one browser session only, start it with
               --proxy-server=127.0.0.1:8080 --ignore-certificate-errors-spki-list={spki}
               Windows/macOS: Chrome uses the system store (below). Remove: same dialog > Delete.
  macOS        sudo security add-trusted-cert -d -p ssl -r trustRoot \\
                 -k /Library/Keychains/System.keychain {pem}
               Remove: sudo security delete-certificate -c mitmproxy \\
                 /Library/Keychains/System.keychain
  Windows      certutil -addstore root {cer}   (as administrator; or double-click the .cer >
               Install Certificate > Local Machine > Trusted Root Certification Authorities)
               Remove: certutil -delstore root mitmproxy
  Android      copy {cer} to the phone > Settings > Security > Encryption & credentials >
               Install a certificate > CA certificate. Apps since Android 7 ignore user CAs
               unless they opt in: usually only the browser can be inspected.
               Remove: Settings > ... > Trusted credentials > User > mitmproxy > Remove.
  iOS          open {cer} on the device (AirDrop or mail) > Settings > General > VPN & Device
               Management > install the profile, then Settings > General > About >
               Certificate Trust Settings > enable full trust for mitmproxy.
               Remove: VPN & Device Management > the profile > Remove Profile.
  Any browser  with the proxy running, open http://mitm.it for mitmproxy's download page.

Apps that pin their certificates (most marketplace apps) refuse any proxy CA: their requests
show up as tls_failed lines in the log and cannot be inspected.
"""


def ensure_ca() -> x509.Certificate:
    """Load shopguard's CA, creating it the way mitmproxy does on first start if missing."""
    confdir = paths.private_dir(paths.confdir())
    store = certs.CertStore.from_store(confdir, CA_NAME, 2048)
    return store.default_ca.to_cryptography()


def spki_sha256(cert: x509.Certificate) -> str:
    """Base64 SHA-256 of the SubjectPublicKeyInfo, as Chromium's SPKI list expects."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def show_ca(args: argparse.Namespace) -> int:
    cert = ensure_ca()
    confdir = paths.confdir()
    pem = confdir / f"{CA_NAME}-ca-cert.pem"
    cer = confdir / f"{CA_NAME}-ca-cert.cer"
    if args.path:
        print(pem)
        return EXIT_OK
    fingerprint = cert.fingerprint(hashes.SHA256()).hex(":").upper()
    print(f"CA certificate:     {pem}")
    print(f"  (DER for Windows, Android, iOS: {cer})")
    print(f"SHA-256 fingerprint: {fingerprint}")
    print(f"SPKI SHA-256:        {spki_sha256(cert)}")
    print(f"Valid until:         {cert.not_valid_after_utc:%Y-%m-%d}")
    print()
    print(TRUST_HELP.format(pem=pem, cer=cer, spki=spki_sha256(cert)))
    return EXIT_OK


PAC_TEMPLATE = """\
// shopguard PAC file: only the configured marketplaces go through the proxy.
function FindProxyForURL(url, host) {{
  // a trailing dot names the same host ("www.taobao.com." is "www.taobao.com")
  host = host.toLowerCase().replace(/\\.+$/, "");
  var exact = {exact};
  var domains = {domains};
  if (host === "mitm.it" || exact.indexOf(host) !== -1) return "{proxy}";
  for (var i = 0; i < domains.length; i++) {{
    if (host === domains[i] || dnsDomainIs(host, "." + domains[i])) return "{proxy}";
  }}
  return "DIRECT";
}}
"""


def print_pac(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return EXIT_USAGE
    globs = [g for site in config.enabled_sites for g in site.hosts]
    exact = sorted({g.domain for g in globs if not g.wildcard})
    domains = sorted({g.domain for g in globs if g.wildcard})
    print(
        PAC_TEMPLATE.format(
            exact=json.dumps(exact),
            domains=json.dumps(domains),
            proxy=f"PROXY {args.listen_host}:{args.listen_port}",
        ),
        end="",
    )
    return EXIT_OK
