"""A self-signed certificate for local stand-ins that real client libraries reach over TLS.

Why TLS at all: the Google Cloud gRPC clients (``aiplatform``) always open a secure channel to an
``api_endpoint``; there is no "insecure" switch. A certificate for ``127.0.0.1``/``localhost`` (as SANs), trusted
through ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``, lets the unmodified client talk to a local server.

Why one certificate per process: gRPC core reads ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` (and the file) once, when
the first secure channel is created, and never again. A second stand-in started later in the same process with a
new certificate would not be trusted, so every stand-in in a process serves the same certificate.
"""

from __future__ import annotations

import atexit
import datetime
import ipaddress
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

_LOCK = threading.Lock()
_PROCESS_CERT: ServerCert | None = None


@dataclass(frozen=True)
class ServerCert:
    """PEM files of a self-signed server certificate (its own CA) and its private key."""

    cert_path: Path
    key_path: Path

    def cert_pem(self) -> bytes:
        """The certificate (also the trust root clients need)."""
        return self.cert_path.read_bytes()

    def key_pem(self) -> bytes:
        """The unencrypted private key."""
        return self.key_path.read_bytes()


def make_self_signed_cert(directory: Path | str, *, days: int = 30) -> ServerCert:
    """Write ``cert.pem`` and ``key.pem`` into ``directory``: EC P-256, SANs ``127.0.0.1``, ``::1``, ``localhost``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expforge local stand-in")])
    now = datetime.datetime.now(datetime.UTC)
    sans = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ServerCert(cert_path, key_path)


def process_cert() -> ServerCert:
    """The certificate every stand-in of this process serves (made on first use, removed at exit)."""
    global _PROCESS_CERT
    with _LOCK:
        if _PROCESS_CERT is None or not _PROCESS_CERT.cert_path.is_file():
            directory = Path(tempfile.mkdtemp(prefix="expforge-tls-"))
            atexit.register(shutil.rmtree, directory, True)
            _PROCESS_CERT = make_self_signed_cert(directory)
        return _PROCESS_CERT


def trust_bundle(cert: ServerCert, existing: Path | str | None) -> Path:
    """A PEM bundle of ``existing`` (a roots file, when given) plus ``cert``, written beside ``cert``.

    Why a bundle: ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` replaces gRPC's roots. Machines often set it to the
    system bundle already; pointing it at the stand-in's certificate alone would break every other TLS
    connection of the process, so the stand-in's certificate is appended to what was trusted before.
    """
    if existing is None or not Path(existing).is_file():
        return cert.cert_path
    existing = Path(existing)
    if existing.resolve() == cert.cert_path.resolve():
        return cert.cert_path
    content = existing.read_bytes()
    pem = cert.cert_pem()
    if pem in content:
        return existing
    bundle = cert.cert_path.with_name("roots.pem")
    with _LOCK:
        staging = bundle.with_suffix(".tmp")
        staging.write_bytes(content.rstrip(b"\n") + b"\n" + pem)
        staging.replace(bundle)
    return bundle
