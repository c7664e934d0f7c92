"""A self-signed certificate for 127.0.0.1, for clients that only speak wss (npm openai)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificate:
    cert: Path  # PEM, what the client trusts (``ca`` / NODE_EXTRA_CA_CERTS)
    key: Path

    def server_context(self) -> ssl.SSLContext:
        """What ``ReplayServer(ssl_context=...)`` and ``Recorder(ssl_context=...)`` take."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


def openssl_missing() -> str | None:
    return None if shutil.which("openssl") else "the openssl command is not installed"


def make_certificate(directory: Path) -> Certificate:
    """A P-256 certificate with subjectAltName IP:127.0.0.1, made by the openssl CLI."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return Certificate(cert, key)
