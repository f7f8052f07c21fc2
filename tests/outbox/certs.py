"""The TLS material the outbox tests use: the throwaway CA and server
certificate of tests/servers/tls.py, plus an unrelated CA that a client must
refuse the server with."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from tests.servers.tls import make_certificates


@dataclass(frozen=True)
class TestPki:
    ca_file: Path  # the CA that signed the server certificate: clients trust this
    other_ca_file: Path  # an unrelated CA: a client trusting only this must refuse the server
    cert_file: Path  # server certificate for localhost and 127.0.0.1
    key_file: Path

    __test__ = False  # not a pytest test class

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_test_pki(directory: Path) -> TestPki:
    """Certificates from tests/servers/tls.py, plus a second, unrelated CA."""
    ours = make_certificates(directory / "ours")
    other = make_certificates(directory / "other")
    return TestPki(ours.ca, other.ca, ours.cert, ours.key)
