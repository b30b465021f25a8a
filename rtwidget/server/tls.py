"""TLS on loopback for the local server: a self-signed certificate made once, kept in the
user's cache directory, and the server's SSL context.

Some clients only speak ``wss://`` (the ``openai`` npm package's realtime WebSocket client
rewrites any base URL to ``wss``). ``python -m rtwidget.server --tls`` (or
``LocalServer(tls=True)``) serves them with a certificate for ``localhost``, ``127.0.0.1`` and
``::1``, which the client is told to trust: node reads it from ``NODE_EXTRA_CA_CERTS``, Python
from ``ssl.create_default_context(cafile=...)``. The certificate is its own authority (it
signs nothing else) and its key never leaves the cache directory (mode 0600). Making one needs
the ``cryptography`` package (``rtwidget[local]``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

from ..protocol.errors import ConfigError

CERT_NAME = "localhost.pem"
KEY_NAME = "localhost-key.pem"
_LIFETIME = dt.timedelta(days=825)  # the longest lifetime clients accept for a server cert
_RENEW_BEFORE = dt.timedelta(days=30)


def cache_dir() -> Path:
    """Where the certificate is kept: the user's cache directory (``XDG_CACHE_HOME`` or
    ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows),
    ``rtwidget/tls`` in it."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rtwidget" / "tls"


@dataclass(frozen=True)
class Certificate:
    """A certificate file and its key file (PEM)."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        """The SSL context the server serves with."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this certificate (for Python clients and tests)."""
        return ssl.create_default_context(cafile=str(self.cert))


def _still_good(path: Path) -> bool:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) > _RENEW_BEFORE


def loopback_certificate(directory: Path | None = None) -> Certificate:
    """The loopback certificate in ``directory`` (default :func:`cache_dir`), made (or made
    anew, a month before it expires) if need be."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:
        raise ConfigError("TLS for the local server needs the cryptography package: pip "
                          "install 'rtwidget[local]'") from exc
    folder = directory or cache_dir()
    found = Certificate(folder / CERT_NAME, folder / KEY_NAME)
    if found.key.exists() and _still_good(found.cert):
        return found
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rtwidget local server")])
    now = dt.datetime.now(dt.timezone.utc)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
             x509.IPAddress(ipaddress.ip_address("::1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _LIFETIME)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        # its own authority, so that trust stores take it as a root; it may sign nothing else
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    descriptor = os.open(found.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem_key)
    found.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return found
