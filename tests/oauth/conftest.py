"""Fixtures for the OAuth2 tests: the tests' own OAuth2 server and a real Dovecot that checks
tokens with it (and offers its SASL to Postfix)."""

import pytest

from tests.servers import dovecot as dovecot_module
from tests.servers.dovecot import Dovecot
from tests.servers.oauth2 import OAuth2Server
from tests.servers.require import require_binary, require_root


@pytest.fixture(scope="module")
def provider(server_tls):
    server = OAuth2Server(server_tls)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def oauth_dovecot(server_tls, provider):
    binary = require_binary("dovecot", dovecot_module.INSTALL_HINT)
    require_root("Dovecot")
    server = Dovecot(binary, server_tls, oauth2_introspection_url=provider.introspection_url)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def desk(app, monkeypatch, server_tls):
    monkeypatch.setitem(app.config, "OAUTH2_CA_FILE", str(server_tls.ca))
    return app
