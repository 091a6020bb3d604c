"""A self-signed TLS certificate for a demo or a first start; production uses a real one (docs/security.md)."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exporter import lockedfile


def self_signed(hosts: list[str], certificate: Path, key: Path, days: int = 825) -> None:
    """Writes a key (0600) and a certificate valid for `hosts` (names or IP addresses) that is its own CA,
    so a pusher trusts it with `--ca-file` pointing at the certificate itself."""
    private = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sitewatch (self-signed)")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(private.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(private, hashes.SHA256()))
    key_text = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
    for path in (certificate, key):
        path.parent.mkdir(parents=True, exist_ok=True)
    lockedfile.replace(key, key_text, new_mode=0o600)
    lockedfile.replace(certificate, cert.public_bytes(serialization.Encoding.PEM).decode(), new_mode=0o644)
