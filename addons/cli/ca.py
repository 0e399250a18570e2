"""`shopguard ca` and `shopguard pac`: shopguard's own CA — issuing, trusting, replacing and
removing it — and a PAC file proxying only the marketplaces."""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import ipaddress
import json
import os
import re
import shutil
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from mitmproxy import certs

from shopguard import paths
from shopguard.cli.common import load_or_report, user_dir
from shopguard.cli.exits import EXIT_OK, EXIT_USAGE
from shopguard.engine.located import ConfigErrors
from shopguard.engine.settings import Config, load_config

ORGANIZATION = "shopguard"
LEGACY_NAME = "mitmproxy"  # what shopguard's CA was called before it had a name of its own
KEY_SIZE = 2048  # mitmproxy's default `key_size`: its certificates reuse the CA's key
# A constrained CA may also certify loopback addresses: mitmproxy adds the address it connected
# to, and without an address subtree every IP address would be permitted.
LOOPBACK_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class CAError(Exception):
    """The CA on disk cannot be used; the message names the file and what to do."""


@dataclass(frozen=True)
class CAFiles:
    """The CA in the layout mitmproxy reads and serves (mitm.it) from its confdir."""

    directory: Path

    @property
    def key_pem(self) -> Path:  # private key + certificate: the file mitmproxy loads
        return self.directory / "mitmproxy-ca.pem"

    @property
    def key_p12(self) -> Path:  # private key + certificate, PKCS#12
        return self.directory / "mitmproxy-ca.p12"

    @property
    def cert_pem(self) -> Path:
        return self.directory / "mitmproxy-ca-cert.pem"

    @property
    def cert_cer(self) -> Path:  # the same PEM, under the name Android and Windows expect
        return self.directory / "mitmproxy-ca-cert.cer"

    @property
    def cert_p12(self) -> Path:
        return self.directory / "mitmproxy-ca-cert.p12"

    @property
    def dhparam(self) -> Path:
        return self.directory / "mitmproxy-dhparam.pem"

    @property
    def private(self) -> tuple[Path, Path]:
        return self.key_pem, self.key_p12


def ca_files(confdir: Path | None = None) -> CAFiles:
    return CAFiles(confdir or paths.confdir())


# --- issuing --------------------------------------------------------------------------------


def _spki(key: PrivateKey | x509.Certificate) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def issue_ca(domains: Sequence[str] | None = None) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A new CA named after shopguard and its key; with `domains`, X.509 name constraints
    (critical) let it certify only those domains and their subdomains (and loopback)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    tag = hashlib.sha256(_spki(key)).hexdigest()[:8]  # tells one generation from the next
    kind = "CA" if domains is None else "constrained CA"
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"shopguard {kind} {tag}"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + certs.CERT_VALIDITY_OFFSET)  # clients with a clock behind
        .not_valid_after(now + certs.CA_EXPIRY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if domains is not None:
        if not domains:
            raise CAError("no site is enabled: a constrained CA would permit every name")
        permitted: list[x509.GeneralName] = [x509.DNSName(d) for d in domains]
        permitted += [x509.IPAddress(net) for net in LOOPBACK_NETWORKS]
        builder = builder.add_extension(
            x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None),
            critical=True,
        )
    return key, builder.sign(private_key=key, algorithm=hashes.SHA256())


def permitted_domains(config: Config) -> list[str]:
    """The domains a constrained CA permits: every enabled site's hosts (the ad-pixel hosts too
    while their site file is enabled), without those another entry already covers."""
    names = {glob.domain for site in config.enabled_sites for glob in site.hosts}
    return sorted(n for n in names if not any(n.endswith("." + other) for other in names))


def constrained_domains(cert: x509.Certificate) -> list[str] | None:
    """The DNS names a CA's name constraints permit, or None for a CA without constraints."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None
    return [
        str(n.value) for n in constraints.permitted_subtrees or () if isinstance(n, x509.DNSName)
    ]


# --- files ----------------------------------------------------------------------------------


def _write_atomically(path: Path, data: bytes, *, mode: int, replace: bool = True) -> bool:
    """Write `path` in one step (a reader sees the old or the new file, never half of one);
    with replace=False only if it does not exist yet. Whether it was written."""
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(scratch, mode)  # an existing scratch file keeps its mode through os.open
        if replace:
            os.replace(scratch, path)
            return True
        try:
            os.link(scratch, path)
        except FileExistsError:
            return False
        return True
    finally:
        scratch.unlink(missing_ok=True)


def _key_and_cert_pem(key: PrivateKey, cert: x509.Certificate) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ) + cert.public_bytes(serialization.Encoding.PEM)


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def _write_derived(files: CAFiles, key: PrivateKey, cert: x509.Certificate) -> None:
    """The certificate in every format devices import, and the key as PKCS#12 (mode 600)."""
    name = _common_name(cert).encode()
    none = serialization.NoEncryption()
    pem = cert.public_bytes(serialization.Encoding.PEM)
    _write_atomically(
        files.key_p12,
        pkcs12.serialize_key_and_certificates(name, key, cert, None, none),
        mode=0o600,
    )
    _write_atomically(
        files.cert_p12,
        pkcs12.serialize_key_and_certificates(name, None, cert, None, none),
        mode=0o644,
    )
    _write_atomically(files.cert_cer, pem, mode=0o644)
    _write_atomically(files.cert_pem, pem, mode=0o644)  # last: the file users look at


def _load(files: CAFiles) -> tuple[PrivateKey, x509.Certificate]:
    try:
        raw = files.key_pem.read_bytes()
        key = certs.load_pem_private_key(raw, None)
        cert = x509.load_pem_x509_certificates(raw)[0]
    except (OSError, ValueError, TypeError) as exc:
        raise CAError(
            f"{files.key_pem}: cannot read the CA ({exc}); `shopguard ca --renew` replaces it"
        ) from exc
    if _spki(key) != _spki(cert):
        raise CAError(
            f"{files.key_pem}: the private key does not belong to the certificate; "
            "`shopguard ca --renew` replaces the CA"
        )
    return key, cert


def _sync(files: CAFiles, key: PrivateKey, cert: x509.Certificate) -> None:
    """Bring the files derived from the CA in line with it (after an interrupted write, or a
    CA mitmproxy created), and keep its private key readable by the user only."""
    pem = cert.public_bytes(serialization.Encoding.PEM)
    derived = (files.cert_pem, files.cert_cer, files.cert_p12, files.key_p12)
    current = files.cert_pem.read_bytes() if files.cert_pem.exists() else b""
    if current != pem or not all(p.exists() for p in derived):
        _write_derived(files, key, cert)
    for private in files.private:
        if private.exists() and private.stat().st_mode & 0o077:
            private.chmod(0o600)
    if not files.dhparam.exists():
        _write_atomically(files.dhparam, certs.DEFAULT_DHPARAM, mode=0o644)


def ensure_ca(confdir: Path | None = None) -> x509.Certificate:
    """shopguard's CA, created in mitmproxy's file layout if there is none; an existing one is
    kept (as it is trusted already) until `shopguard ca --renew`."""
    files = ca_files(confdir)
    paths.private_dir(files.directory)
    if not files.key_pem.exists():
        new_key, new_cert = issue_ca()
        pem = _key_and_cert_pem(new_key, new_cert)
        _write_atomically(files.key_pem, pem, mode=0o600, replace=False)
    key, cert = _load(files)  # the one on disk: another process may have been first
    _sync(files, key, cert)
    return cert


def install_ca(
    key: PrivateKey, cert: x509.Certificate, confdir: Path | None = None
) -> x509.Certificate | None:
    """Replace the CA with `key`/`cert`; the CA it replaced, if one could be read."""
    files = ca_files(confdir)
    paths.private_dir(files.directory)
    try:
        _, old = _load(files) if files.key_pem.exists() else (None, None)
    except CAError:
        old = None
    _write_atomically(files.key_pem, _key_and_cert_pem(key, cert), mode=0o600)
    _sync(files, key, cert)
    return old


def prepare_ca(confdir: Path) -> dict[str, Any]:
    """Before mitmproxy starts: create shopguard's CA in `confdir` if there is none (mitmproxy
    then loads it instead of making one named "mitmproxy"). The mitmproxy options it needs."""
    try:
        cert = ensure_ca(confdir)
    except CAError as exc:
        print(f"shopguard: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from exc
    if constrained_domains(cert) is not None:
        # mitmproxy copies the upstream certificate's names into its own certificate, and a
        # browser refuses a certificate with one name outside the CA's constraints: name only
        # the host the client asked for
        return {"upstream_cert": False}
    return {}


# --- printing -------------------------------------------------------------------------------


def spki_sha256(cert: x509.Certificate) -> str:
    """Base64 SHA-256 of the SubjectPublicKeyInfo, as Chromium's SPKI list expects."""
    return base64.b64encode(hashlib.sha256(_spki(cert)).digest()).decode()


def fingerprint(cert: x509.Certificate, algorithm: hashes.HashAlgorithm | None = None) -> str:
    return cert.fingerprint(algorithm or hashes.SHA256()).hex(":").upper()


TRUST_HELP = """\
How to trust it (only on devices you own; remove it when you stop using shopguard):
  Firefox      Settings > Privacy & Security > Certificates > View Certificates > Authorities >
               Import... > {pem} > tick "Trust this CA to identify websites".
  Chromium /   Linux: Settings > Privacy and security > Security > Manage certificates >
  Chrome       Authorities > Import > {pem} > "Trust this certificate for identifying websites";
               or from a shell (Debian package libnss3-tools):
                 certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n "{name}" -i {pem}
               Or, for one browser session only (this skips every check of the certificates,
               name constraints included), start it with
               --proxy-server=127.0.0.1:8080 --ignore-certificate-errors-spki-list={spki}
               Windows/macOS: Chrome uses the system store (below).
  macOS        sudo security add-trusted-cert -d -p ssl -r trustRoot \\
                 -k /Library/Keychains/System.keychain {pem}
  Windows      certutil -addstore root {cer}   (as administrator; or double-click the .cer >
               Install Certificate > Local Machine > Trusted Root Certification Authorities)
  Android      copy {cer} to the phone > Settings > Security > Encryption & credentials >
               Install a certificate > CA certificate. Apps since Android 7 ignore user CAs
               unless they opt in: usually only the browser can be inspected.
  iOS          open {cer} on the device (AirDrop or mail) > Settings > General > VPN & Device
               Management > install the profile, then Settings > General > About >
               Certificate Trust Settings > enable full trust for "{name}".
  Any browser  with the proxy running, open http://mitm.it for mitmproxy's download page.

Apps that pin their certificates (most marketplace apps) refuse any proxy CA: their requests
show up as tls_failed lines in the log and cannot be inspected.
"""

REMOVE_HELP = """\
  Firefox      Settings > Privacy & Security > Certificates > View Certificates > Authorities >
               "{org}" > "{name}" > Delete or Distrust.
  Chromium /   Linux: Settings > Privacy and security > Security > Manage certificates >
  Chrome       Authorities > "{org}" > "{name}" > Delete;
               or from a shell:
                 certutil -d sql:$HOME/.pki/nssdb -D -n "{name}"
  macOS        sudo security delete-certificate -Z {sha1} \\
                 /Library/Keychains/System.keychain
  Windows      certutil -delstore root {serial}   (as administrator)
  Android      Settings > Security > Encryption & credentials > Trusted credentials > User >
               "{name}" > Remove.
  iOS          Settings > General > VPN & Device Management > "{name}" >
               Remove Profile.
"""


def _organization(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(names[0].value) if names else _common_name(cert)


def _serial(cert: x509.Certificate) -> str:
    """The serial number in hex, whole bytes, as Windows shows it."""
    digits = f"{cert.serial_number:x}"
    return "0" * (len(digits) % 2) + digits


def removal_steps(cert: x509.Certificate) -> str:
    """Where to remove this CA, named so that no other certificate is removed with it: by its
    own name, by its SHA-1 fingerprint (macOS) or its serial number (Windows)."""
    return REMOVE_HELP.format(
        name=_common_name(cert),
        org=_organization(cert),
        sha1=cert.fingerprint(hashes.SHA1()).hex().upper(),
        serial=_serial(cert),
    )


def describe(cert: x509.Certificate, files: CAFiles, config: Config | None) -> list[str]:
    lines = [
        f"CA certificate:     {files.cert_pem}",
        f"  (DER for Windows, Android, iOS: {files.cert_cer})",
        f"Name:                {_common_name(cert)}",
        f"SHA-256 fingerprint: {fingerprint(cert)}",
        f"SPKI SHA-256:        {spki_sha256(cert)}",
        f"Valid until:         {cert.not_valid_after_utc:%Y-%m-%d}",
    ]
    domains = constrained_domains(cert)
    if domains is None:
        lines.append(
            "Name constraints:    none (`shopguard ca --constrained` limits it to your sites)"
        )
    else:
        allowed = f"only {', '.join(domains)} and loopback addresses"
        lines += textwrap.wrap(
            allowed, width=100, initial_indent="Name constraints:    ", subsequent_indent=" " * 21
        )
        if config is not None:
            outside = sorted(
                {
                    glob.text
                    for site in config.enabled_sites
                    for glob in site.hosts
                    if not any(glob.domain == d or glob.domain.endswith("." + d) for d in domains)
                }
            )
            if outside:
                lines.append(
                    f"  not permitted, browsers will refuse them: {', '.join(outside)} — "
                    "run `shopguard ca --constrained` again"
                )
    if _common_name(cert) == LEGACY_NAME:
        lines.append(
            'This CA is named "mitmproxy", as mitmproxy\'s own: `shopguard ca --renew` replaces '
            "it with one named after shopguard."
        )
    return lines


def trust_steps(cert: x509.Certificate, files: CAFiles) -> str:
    return TRUST_HELP.format(
        pem=files.cert_pem, cer=files.cert_cer, spki=spki_sha256(cert), name=_common_name(cert)
    )


def _quiet_config(given: Path | None) -> Config | None:
    """The configuration for remarks only: its errors are for `policy check` to print."""
    if given is not None and not given.is_dir():
        return None
    try:
        return load_config(paths.shipped_config_dir(), user_dir(given))
    except ConfigErrors:
        return None


def show_ca(args: argparse.Namespace) -> int:
    files = ca_files()
    if args.yes and not args.remove:
        print("shopguard: --yes goes with --remove", file=sys.stderr)
        return EXIT_USAGE
    if args.remove:
        return remove_ca(args, files)
    if args.constrained or args.renew:
        config = load_or_report(args.config) if args.constrained else None
        if args.constrained and config is None:
            return EXIT_USAGE
        try:
            key, cert = issue_ca(permitted_domains(config) if config is not None else None)
        except CAError as exc:
            print(f"shopguard: {exc}", file=sys.stderr)
            return EXIT_USAGE
        old = install_ca(key, cert)
        print(f"Issued a new CA: {_common_name(cert)}")
        print()
        print("\n".join(describe(cert, files, config)))
        print()
        print("Restart `shopguard run` to use it. Trust the new CA where you trusted the old one,")
        print("then remove the old one:")
        print()
        if old is not None:
            print(f'The old CA "{_common_name(old)}" (SHA-256 {fingerprint(old)}):')
            print(removal_steps(old))
        print(trust_steps(cert, files))
        return EXIT_OK
    try:
        cert = ensure_ca()
    except CAError as exc:
        print(f"shopguard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.path:
        print(files.cert_pem)
        return EXIT_OK
    print("\n".join(describe(cert, files, _quiet_config(args.config))))
    print()
    print(trust_steps(cert, files))
    print("How to remove it again (`shopguard ca --remove` lists every step of an uninstall):")
    print(removal_steps(cert))
    return EXIT_OK


def _log_files(path: Path) -> list[Path]:
    """A log and the files its rotation made (`flows.jsonl.<time>Z`, compressed `.gz`)."""
    if not path.parent.is_dir():
        return []
    own = re.compile(re.escape(path.name) + r"(?:\.\d{8}T\d{12}Z(?:\.gz)?)?")
    return sorted(p for p in path.parent.iterdir() if own.fullmatch(p.name))


def remove_ca(args: argparse.Namespace, files: CAFiles) -> int:
    """What removes shopguard's CA, its state and its logs; with --yes, the files go too."""
    state = paths.state_dir()
    config = _quiet_config(args.config)
    configured_log = config.settings.log.path if config is not None else None
    elsewhere = (
        _log_files(configured_log)
        if configured_log is not None and not configured_log.is_relative_to(state)
        else []
    )
    cert: x509.Certificate | None = None
    if files.key_pem.exists():
        try:
            cert = _load(files)[1]
        except CAError as exc:
            print(f"shopguard: {exc}", file=sys.stderr)
    print("To remove shopguard's CA and everything shopguard wrote:")
    print("1. Stop `shopguard run` (Ctrl-C in its terminal).")
    if cert is not None:
        print(
            f'2. Remove the CA "{_common_name(cert)}" from every browser and device that trusts it'
        )
        print(f"   (SHA-256 {fingerprint(cert)}):")
        print(removal_steps(cert), end="")
    else:
        print(f"2. No CA in {files.directory}: nothing to remove from browsers and devices.")
    print("3. Delete shopguard's state directory: the CA and its private key, the key of the log's")
    print("   fingerprints, the log in its default place:")
    print(f"     rm -rf {state}")
    step = 4
    if elsewhere:
        print(f"{step}. Delete the log configured in shopguard.yaml and its rotated files:")
        print(f"     rm -f {' '.join(str(p) for p in elsewhere)}")
        step += 1
    done_by_yes = "steps 3 and 4" if elsewhere else "step 3"
    print(f"{step}. Logs written with `shopguard run --log PATH` are where you put them: delete")
    print("   them the same way.")
    print(f"{step + 1}. Your own configuration (site files, profile) is left alone; delete it if")
    print(f"   you wish: {paths.user_config_dir()}")
    print(
        f"{step + 2}. Uninstall shopguard itself: `pip uninstall shopguard`, or delete its .venv."
    )
    if not args.yes:
        print()
        print(f"`shopguard ca --remove --yes` does {done_by_yes} (the files) for you.")
        return EXIT_OK
    print()
    removed = _remove_files(state, elsewhere)
    for path in removed:
        print(f"removed {path}")
    if not removed:
        print("nothing to delete: shopguard has no state or log files here")
    return EXIT_OK


def _remove_files(state: Path, logs: Iterable[Path]) -> list[Path]:
    removed = []
    if state.exists():
        shutil.rmtree(state)
        removed.append(state)
    for path in logs:
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


# --- PAC ------------------------------------------------------------------------------------

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
