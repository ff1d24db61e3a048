"""A private CA and the webhook's serving certificate, for clusters without cert-manager.

The API server calls webhooks over HTTPS only and checks the certificate against the
webhook configuration's ``caBundle`` and the Service's DNS name, so the certificate names
every form a Service is reached by: ``svc``, ``svc.ns``, ``svc.ns.svc`` and
``svc.ns.svc.cluster.local``. Keys are ECDSA P-256. The CA's private key is not kept: to
rotate, make a new pair and apply the new ``caBundle`` with it (cert-manager rotates without
that step).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from app.errors import InputError
from app.k8s.names import dns_label

CA_FILE, CERT_FILE, KEY_FILE = "ca.crt", "tls.crt", "tls.key"
# Clocks of nodes and API servers drift: the certificate is valid from a little before now.
_BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class ServingCertificate:
    """PEM bytes of the CA certificate, the serving certificate and its private key."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def service_dns_names(*, service: str, namespace: str) -> list[str]:
    """The names a Service is called by inside the cluster, shortest first."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def make_serving_certificate(
    *, service: str, namespace: str, days: int = 365
) -> ServingCertificate:
    """A new CA (valid ``days``) and a certificate signed by it for the Service's DNS names."""
    if days < 1:
        raise InputError("--days must be at least 1")
    dns_label(service, what="service")
    dns_label(namespace, what="namespace")
    now = dt.datetime.now(dt.UTC)
    not_after = now + dt.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("sealgate webhook CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = service_dns_names(service=service, namespace=namespace)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(service))  # verifiers read the SANs; CN is at most 64 chars
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ServingCertificate(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def write_serving_certificate(
    certificate: ServingCertificate, *, directory: Path, overwrite: bool = False
) -> list[Path]:
    """Write ``ca.crt``, ``tls.crt`` and ``tls.key`` (mode 0600, created so) in ``directory``.

    Refuses with ``InputError`` when one exists already and ``overwrite`` is false: a key in
    use must not be replaced by accident. Returns the paths written.
    """
    files = [
        (directory / CA_FILE, certificate.ca_pem, 0o644),
        (directory / CERT_FILE, certificate.cert_pem, 0o644),
        (directory / KEY_FILE, certificate.key_pem, 0o600),
    ]
    existing = [str(path) for path, _, _ in files if path.exists()]
    if existing and not overwrite:
        raise InputError(f"{', '.join(existing)} exist already; pass --force to replace them")
    directory.mkdir(parents=True, exist_ok=True)
    for path, data, mode in files:
        # The key file is never readable by others, not even between open and chmod.
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        descriptor = os.open(path, flags, mode)
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
    return [path for path, _, _ in files]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
