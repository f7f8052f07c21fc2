"""pytest fixtures that start real Dovecot and Postfix servers over loopback.

Load once from the root tests/conftest.py: `pytest_plugins = ["tests.servers.fixtures"]`.
Each pytest-xdist worker gets its own servers on its own free ports and folders. A missing
server binary skips the tests that need it, or fails them under CI=true (see require.py).
"""

from __future__ import annotations

import itertools
import os
import secrets
from dataclasses import dataclass
from typing import Callable

import pytest

from . import dovecot as dovecot_module
from . import postfix as postfix_module
from .dovecot import Dovecot
from .postfix import Postfix
from .require import require_binary, require_root
from .tls import TlsFiles, make_certificates

_accounts = itertools.count(1)


@pytest.fixture(scope="session")
def server_tls(tmp_path_factory) -> TlsFiles:
    """Throwaway CA (`.ca`) and the servers' certificate (`.cert`, `.key`) for 127.0.0.1/localhost."""
    return make_certificates(tmp_path_factory.mktemp("server-tls"))


@pytest.fixture(scope="session")
def _dovecot_server(server_tls):
    binary = require_binary("dovecot", dovecot_module.INSTALL_HINT)
    require_root("Dovecot")
    server = Dovecot(binary, server_tls)
    try:
        server.start()
        yield server
    finally:
        server.remove()  # stops it even when start() failed half-way


@pytest.fixture
def dovecot(_dovecot_server) -> Dovecot:
    """The session's running Dovecot (restarted here if an earlier test left it stopped).

    `.host`, `.ports.imap/.imaps/.pop3/.pop3s`, `.ca_path`, `.add_user(email, password)`,
    `.append(email, raw, folder="INBOX")`, `.messages(email, folder)`, `.folders(email)`,
    `.clear(email)`, `.stop()`, `.start()`, `.log_lines()`. Use a fresh address per test
    (see `mail_account`): the server and its mailboxes are shared by the whole session.
    """
    _dovecot_server.start()
    return _dovecot_server


@dataclass
class MailAccount:
    """A Dovecot account made for one test."""

    server: Dovecot
    email: str
    password: str

    def append(self, raw: bytes, folder: str = "INBOX", *, seen: bool = False) -> None:
        self.server.append(self.email, raw, folder, seen=seen)

    def messages(self, folder: str = "INBOX") -> list[bytes]:
        return self.server.messages(self.email, folder)

    def folders(self) -> list[str]:
        return self.server.folders(self.email)


@pytest.fixture
def mail_account(dovecot) -> MailAccount:
    """A fresh, empty account on the session's Dovecot; its mail is deleted after the test."""
    email = f"user{next(_accounts)}-{os.getpid()}@example.test"
    account = MailAccount(dovecot, email, secrets.token_urlsafe(12))
    dovecot.add_user(email, account.password)
    yield account
    dovecot.clear(email)


@pytest.fixture
def postfix_factory(server_tls) -> Callable[..., Postfix]:
    """Start a real Postfix relaying `domains` to LMTP on 127.0.0.1:`lmtp_port`:

        postfix = postfix_factory(lmtp_port, domains=("desk.test",), settings={"name": "value"})

    Returns a running `Postfix` (`.smtp_port`, `.smtps_port`, `.send()`, `.flush()`,
    `.queue_ids()`, `.queue_empty()`, `.wait_until_delivered()`, `.deliveries()`,
    `.wait_for_log()`, `.log_lines()`, `.stop()`). Every instance is stopped and deleted after
    the test. Several may run at once, in one test or across pytest-xdist workers.
    """
    binary = require_binary("postfix", postfix_module.INSTALL_HINT)
    require_binary("postqueue", postfix_module.INSTALL_HINT)
    require_root("Postfix")
    started: list[Postfix] = []

    def start(lmtp_port: int, domains: tuple[str, ...] = ("desk.test",),
              settings: dict[str, str] | None = None) -> Postfix:
        server = Postfix(binary, server_tls, lmtp_port, domains, settings=settings)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.remove()
