"""Fixtures for the outbox tests: real SMTP sinks on loopback, plain, STARTTLS+AUTH and TLS."""

import pytest

from .certs import make_test_pki
from .smtp_sink import SmtpSink

SINK_USER = "desk-relay"
SINK_PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory):
    """A throwaway CA, a second unrelated CA and a server certificate for localhost."""
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def smtp_sink():
    """Plain SMTP, no AUTH. `sink.messages`, `sink.faults`, `sink.connections`, `sink.settings()`."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def smtp_sink_tls(test_pki):
    """Implicit TLS (like port 465), certificate signed by the test CA, no AUTH."""
    with SmtpSink(tls="tls", pki=test_pki) as sink:
        yield sink


@pytest.fixture
def smtp_sink_starttls_auth(test_pki):
    """STARTTLS required, AUTH required (only after TLS) for SINK_USER / SINK_PASSWORD."""
    with SmtpSink(tls="starttls", pki=test_pki, users={SINK_USER: SINK_PASSWORD}) as sink:
        yield sink
