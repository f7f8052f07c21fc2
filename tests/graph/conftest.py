"""Fixtures for the Microsoft Graph tests: the tests' OAuth2 server standing in for Entra ID
(MSAL's discovery and client credentials run against it) and the Graph stand-in that checks
its tokens (tests/servers/graph.py: no Graph server can run here)."""

from __future__ import annotations

import itertools
import os

import pytest

from switchboard.db import db
from switchboard.oauth.grants import new_grant
from tests.oauth.conftest import provider  # noqa: F401 (the tests' OAuth2 server, standing in for Entra ID)
from tests.servers.graph import GraphServer

_mailboxes = itertools.count(1)
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


@pytest.fixture(scope="module")
def graph(server_tls, provider):
    server = GraphServer(server_tls, provider)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def desk(app, monkeypatch, server_tls, graph):
    monkeypatch.setitem(app.config, "OAUTH2_CA_FILE", str(server_tls.ca))
    graph.faults.clear()
    graph.log.clear()
    graph.delay.clear()
    graph.refuse_tokens = False
    graph.chunked_values = False
    graph.link_host = None
    return app


@pytest.fixture
def mailbox(graph) -> str:
    """A fresh mailbox on the Graph stand-in (its user principal name)."""
    user = f"help{next(_mailboxes)}-{os.getpid()}@contoso.test"
    graph.add_mailbox(user)
    return user


def microsoft_grant(provider, mailbox: str):
    """An app registration's client-credentials grant for Graph, through MSAL."""
    client_id, secret = provider.add_client(mailbox=mailbox)
    grant = new_grant(provider="microsoft", flow="app", client_id=client_id, client_secret=secret,
                      tenant_id="tenant-1", token_endpoint=f"{provider.base_url}/tenant-1", scopes=GRAPH_SCOPE)
    db.session.flush()
    return grant
