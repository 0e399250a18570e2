"""`shopguard ca`: a CA named after shopguard in mitmproxy's file layout, kept until renewed;
a constrained CA whose certificates verify only for the configured sites; an uninstall path."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from mitmproxy import certs

from shopguard import paths
from shopguard.cli import ca
from shopguard.cli.main import main

OPENSSL = shutil.which("openssl")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Nothing touches the real home: config and state go to tmp directories."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def user(tmp_path: Path) -> Path:
    directory = tmp_path / "user"
    (directory / "sites").mkdir(parents=True)
    return directory


def confdir() -> Path:
    return paths.confdir()


def current_ca() -> x509.Certificate:
    return x509.load_pem_x509_certificate((confdir() / "mitmproxy-ca-cert.pem").read_bytes())


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def sha256(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def serial(cert: x509.Certificate) -> str:
    digits = f"{cert.serial_number:x}"
    return digits.zfill(len(digits) + len(digits) % 2)


def leaf_for(host: str) -> bytes:
    """The certificate mitmproxy itself issues for `host` from the CA in shopguard's confdir."""
    store = certs.CertStore.from_store(confdir(), "mitmproxy", 2048)
    return store.get_cert(host, [x509.DNSName(host)]).cert.to_pem()


def openssl_verify(tmp_path: Path, host: str) -> subprocess.CompletedProcess[str]:
    if (
        OPENSSL is None
    ):  # the same checks through OpenSSL's library: tests/integration/test_ca_run.py
        pytest.skip("the openssl command is not installed")
    leaf = tmp_path / f"{host}.pem"
    leaf.write_bytes(leaf_for(host))
    ca_pem = confdir() / "mitmproxy-ca-cert.pem"
    return subprocess.run(
        [OPENSSL, "verify", "-purpose", "sslserver", "-CAfile", str(ca_pem), str(leaf)],
        capture_output=True,
        text=True,
        timeout=30,
    )


# --- the CA's name and files ----------------------------------------------------------------


def test_the_ca_is_named_after_shopguard_in_the_files_mitmproxy_reads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["ca"]) == 0
    out = capsys.readouterr().out
    cert = current_ca()
    assert common_name(cert).startswith("shopguard CA ")
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "shopguard"
    assert "mitmproxy" not in cert.subject.rfc4514_string()
    assert f"Name:                {common_name(cert)}" in out
    assert "SHA-256 fingerprint: " + sha256(cert) in out
    # the removal steps name this CA only: its own name, SHA-1 (macOS) and serial (Windows)
    assert f'certutil -d sql:$HOME/.pki/nssdb -D -n "{common_name(cert)}"' in out
    assert cert.fingerprint(hashes.SHA1()).hex().upper() in out
    assert f"certutil -delstore root {serial(cert)}" in out
    assert "delete-certificate -c mitmproxy" not in out

    files = {p.name: p for p in confdir().iterdir()}
    assert set(files) == {
        "mitmproxy-ca.pem",
        "mitmproxy-ca.p12",
        "mitmproxy-ca-cert.pem",
        "mitmproxy-ca-cert.cer",
        "mitmproxy-ca-cert.p12",
        "mitmproxy-dhparam.pem",
    }
    for private in ("mitmproxy-ca.pem", "mitmproxy-ca.p12"):
        assert stat.S_IMODE(files[private].stat().st_mode) == 0o600, private
    assert stat.S_IMODE(confdir().stat().st_mode) == 0o700
    assert (
        files["mitmproxy-ca-cert.cer"].read_bytes() == files["mitmproxy-ca-cert.pem"].read_bytes()
    )
    p12 = pkcs12.load_pkcs12(files["mitmproxy-ca-cert.p12"].read_bytes(), None)
    assert [c.certificate for c in p12.additional_certs] == [cert] and p12.key is None
    p12 = pkcs12.load_pkcs12(files["mitmproxy-ca.p12"].read_bytes(), None)
    assert p12.cert is not None and p12.cert.certificate == cert and p12.key is not None

    # mitmproxy loads this CA rather than making its own, and signs with it
    store = certs.CertStore.from_store(confdir(), "mitmproxy", 2048)
    assert store.default_ca.to_cryptography() == cert
    leaf = store.get_cert("www.taobao.com", [x509.DNSName("www.taobao.com")]).cert
    assert leaf.to_cryptography().issuer == cert.subject


def test_run_creates_the_ca_before_mitmproxy_starts() -> None:
    """`shopguard run` calls this before mitmproxy loads its confdir."""
    assert ca.prepare_ca(confdir()) == {}
    assert common_name(current_ca()).startswith("shopguard CA ")


def test_an_existing_ca_is_kept_until_it_is_renewed(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a CA made by mitmproxy, as shopguard's was before it had a name of its own
    paths.private_dir(confdir())
    certs.CertStore.create_store(confdir(), "mitmproxy", 2048)
    legacy = current_ca()
    assert common_name(legacy) == "mitmproxy"

    assert main(["ca"]) == 0
    out = capsys.readouterr().out
    assert current_ca() == legacy  # trusted already: kept
    assert "`shopguard ca --renew` replaces it" in out
    assert ca.prepare_ca(confdir()) == {} and current_ca() == legacy

    assert main(["ca", "--renew"]) == 0
    out = capsys.readouterr().out
    renewed = current_ca()
    assert renewed != legacy and common_name(renewed).startswith("shopguard CA ")
    assert certs.CertStore.from_store(
        confdir(), "mitmproxy", 2048
    ).default_ca.to_cryptography() == (renewed)
    # the user is told to trust the new CA and how to remove exactly the old one
    assert "Trust the new CA where you trusted the old one" in out
    assert f'The old CA "mitmproxy" (SHA-256 {sha256(legacy)})' in out
    assert legacy.fingerprint(hashes.SHA1()).hex().upper() in out
    assert f"certutil -delstore root {serial(legacy)}" in out
    assert f"Name:                {common_name(renewed)}" in out
    for private in ("mitmproxy-ca.pem", "mitmproxy-ca.p12"):
        assert stat.S_IMODE((confdir() / private).stat().st_mode) == 0o600

    assert main(["ca", "--path"]) == 0
    assert current_ca() == renewed  # and kept from now on


def test_the_public_files_follow_the_ca_mitmproxy_loads() -> None:
    """An interrupted renewal can leave the exported certificate behind the CA in use."""
    ca.ensure_ca()
    first = current_ca()
    key, second = ca.issue_ca()
    (confdir() / "mitmproxy-ca.pem").write_bytes(ca._key_and_cert_pem(key, second))
    (confdir() / "mitmproxy-ca.p12").unlink()
    assert ca.ensure_ca() == second != first
    assert current_ca() == second
    assert stat.S_IMODE((confdir() / "mitmproxy-ca.p12").stat().st_mode) == 0o600


def test_an_unreadable_ca_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    paths.private_dir(confdir())
    (confdir() / "mitmproxy-ca.pem").write_text("not a certificate\n")
    assert main(["ca"]) == 2
    err = capsys.readouterr().err
    assert "mitmproxy-ca.pem: cannot read the CA" in err and "shopguard ca --renew" in err
    with pytest.raises(SystemExit) as stopped:
        ca.prepare_ca(confdir())
    assert stopped.value.code == 2
    assert main(["ca", "--renew"]) == 0  # the way out it names
    assert common_name(current_ca()).startswith("shopguard CA ")


# --- constrained ----------------------------------------------------------------------------


def test_a_constrained_ca_permits_only_the_sites_domains(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["ca", "--constrained"]) == 0
    out = capsys.readouterr().out
    cert = current_ca()
    assert common_name(cert).startswith("shopguard constrained CA ")
    extension = cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert extension.critical
    permitted = extension.value.permitted_subtrees or []
    dns = {str(n.value) for n in permitted if isinstance(n, x509.DNSName)}
    assert {"taobao.com", "mmstat.com", "alicdn.com", "temu.com", "jd.com"} <= dns
    assert {"connect.facebook.net", "bat.bing.com"} <= dns  # the ad-pixel hosts, file enabled
    assert "facebook.net" not in dns and "google.com" not in dns
    # no subtree another already covers, and only loopback among addresses
    assert not any(a.endswith("." + b) for a in dns for b in dns)
    addresses = {str(n.value) for n in permitted if isinstance(n, x509.IPAddress)}
    assert addresses == {"127.0.0.0/8", "::1/128"}
    assert extension.value.excluded_subtrees is None
    assert "Name constraints:    only 1688.com, 360buyimg.com" in out
    block = out.split("Name constraints:", 1)[1].split("\n\n", 1)[0]
    assert "yangkeduo.com" in block and max(len(x) for x in block.splitlines()) <= 100
    # shopguard run then names only the requested host in its certificates
    assert ca.prepare_ca(confdir()) == {"upstream_cert": False}


def test_a_constrained_ca_leaves_out_the_pixel_hosts_when_their_file_is_disabled(
    user: Path,
) -> None:
    (user / "sites" / "third-party-pixels.yaml").write_text("enabled: false\n")
    (user / "sites" / "bazaar.yaml").write_text('hosts: ["*.bazaar.example"]\n')
    assert main(["ca", "--constrained", "--config", str(user)]) == 0
    domains = ca.constrained_domains(current_ca())
    assert domains is not None
    assert "bazaar.example" in domains and "taobao.com" in domains
    assert "connect.facebook.net" not in domains and "bat.bing.com" not in domains


def test_a_constrained_ca_needs_a_site(user: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for shipped in (paths.shipped_config_dir() / "sites").glob("*.yaml"):
        (user / "sites" / shipped.name).write_text("enabled: false\n")
    assert main(["ca", "--constrained", "--config", str(user)]) == 2
    assert "no site is enabled" in capsys.readouterr().err
    assert not (confdir() / "mitmproxy-ca.pem").exists()


def test_openssl_accepts_a_sites_certificate_and_refuses_another_domain(tmp_path: Path) -> None:
    assert main(["ca", "--constrained"]) == 0
    for host in ("www.taobao.com", "h5api.m.taobao.com", "gm.mmstat.com", "connect.facebook.net"):
        checked = openssl_verify(tmp_path, host)
        assert checked.returncode == 0, (host, checked.stdout, checked.stderr)
    for host in ("www.bank.example", "taobao.com.evil.example", "www.facebook.com"):
        checked = openssl_verify(tmp_path, host)
        assert checked.returncode != 0, host
        assert "permitted subtree violation" in checked.stdout + checked.stderr, host


def verifies(host: str) -> bool:
    """Whether `cryptography`'s RFC 5280 verifier accepts the certificate mitmproxy issues for
    `host`, as a server certificate for that name, from shopguard's CA alone."""
    verifier = (
        PolicyBuilder().store(Store([current_ca()])).build_server_verifier(x509.DNSName(host))
    )
    try:
        verifier.verify(x509.load_pem_x509_certificate(leaf_for(host)), [])
    except VerificationError:
        return False
    return True


@pytest.mark.parametrize("constrained", [True, False], ids=["constrained", "plain"])
def test_a_certificate_for_another_domain_verifies_only_from_a_ca_without_constraints(
    constrained: bool,
) -> None:
    assert main(["ca", "--constrained"] if constrained else ["ca"]) == 0
    for host in ("www.taobao.com", "h5api.m.taobao.com", "www.temu.com", "bat.bing.com"):
        assert verifies(host), host
    for host in ("www.bank.example", "taobao.com.evil.example", "eviltaobao.com", "bing.com"):
        assert verifies(host) is not constrained, host


def test_openssl_accepts_any_domain_from_a_ca_without_constraints(tmp_path: Path) -> None:
    """The control: the refusal above is the constraints' doing, not the certificates'."""
    assert main(["ca"]) == 0
    for host in ("www.taobao.com", "www.bank.example"):
        checked = openssl_verify(tmp_path, host)
        assert checked.returncode == 0, (host, checked.stdout, checked.stderr)


def test_show_says_which_configured_hosts_a_constrained_ca_does_not_cover(
    user: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ca", "--constrained", "--config", str(user)]) == 0
    (user / "sites" / "bazaar.yaml").write_text('hosts: ["*.bazaar.example"]\n')
    capsys.readouterr()
    assert main(["ca", "--config", str(user)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"not permitted, browsers will refuse them: \*\.bazaar\.example", out)
    assert "run `shopguard ca --constrained` again" in out


# --- remove ---------------------------------------------------------------------------------


def test_remove_lists_the_uninstall_and_deletes_nothing_without_yes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ca.ensure_ca()
    cert = current_ca()
    log = paths.default_log_path()
    log.write_text("{}\n")
    assert main(["ca", "--remove"]) == 0
    out = capsys.readouterr().out
    assert f'Remove the CA "{common_name(cert)}" from every browser' in out
    assert f"(SHA-256 {sha256(cert)})" in out
    assert f'certutil -d sql:$HOME/.pki/nssdb -D -n "{common_name(cert)}"' in out
    assert f"rm -rf {paths.state_dir()}" in out
    assert "`shopguard ca --remove --yes` does step 3 (the files)" in out
    assert log.exists() and (confdir() / "mitmproxy-ca.pem").exists()


def test_remove_yes_deletes_the_state_the_ca_and_the_logs(
    user: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "logs"
    elsewhere.mkdir()
    (user / "shopguard.yaml").write_text(f"log:\n  path: {elsewhere / 'flows.jsonl'}\n")
    rotated = ("flows.jsonl.20250101T000000000000Z.gz", "flows.jsonl.20250102T000000000000Z")
    for name in ("flows.jsonl", *rotated, "flows.jsonl.bak", "other.txt"):
        (elsewhere / name).write_text("x\n")
    ca.ensure_ca()
    paths.default_log_path().write_text("{}\n")
    paths.install_secret()
    assert main(["ca", "--remove", "--yes", "--config", str(user)]) == 0
    out = capsys.readouterr().out
    assert not paths.state_dir().exists()
    assert f"removed {paths.state_dir()}" in out
    # only the log's own files
    assert sorted(p.name for p in elsewhere.iterdir()) == ["flows.jsonl.bak", "other.txt"]
    assert user.exists()  # the user's own configuration is theirs
    assert main(["ca", "--remove", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "No CA in" in out and "nothing to delete" in out


def test_yes_goes_only_with_remove(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ca", "--yes"]) == 2
    assert "--yes goes with --remove" in capsys.readouterr().err
    assert not (confdir() / "mitmproxy-ca.pem").exists()
    with pytest.raises(SystemExit):
        main(["ca", "--renew", "--constrained"])
