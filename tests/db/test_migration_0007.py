"""Migration 0007 on a database as an earlier version left it: POP3 accounts saved as
"move" (what `mail accounts add` without --after did, issue 10 item 15) become "delete",
nothing else changes, and the message_claim table comes and goes with the revision."""

import os
import uuid

import psycopg
import pytest
import sqlalchemy as sa

from tests.conftest import BACKENDS, PG_ADMIN_URL, make_test_app

ACCOUNTS = [("pop-default", "pop3", "move"), ("pop-keep", "pop3", "seen"), ("imap-move", "imap", "move")]


@pytest.fixture(params=BACKENDS)
def empty_database(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    name = f"switchboard_0007_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        base = sa.engine.make_url(PG_ADMIN_URL)
        yield base.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrading_turns_pop3_accounts_saved_as_move_into_delete(empty_database):
    from flask_migrate import downgrade, upgrade

    from switchboard.db import db

    app = make_test_app(empty_database)
    with app.app_context():
        upgrade(revision="0006")
        with db.engine.begin() as conn:
            for name, protocol, after in ACCOUNTS:
                conn.execute(sa.text(
                    "INSERT INTO incoming_account (name, protocol, active, security, folder, after_processing, "
                    "processed_folder, poll_interval_seconds, max_messages_per_session, batch_size, "
                    "timeout_seconds, allow_new_calls, unknown_senders, use_linked_analyst, trusted_submission, "
                    "created_at) VALUES (:name, :protocol, true, 'tls', 'INBOX', :after, 'Processed', 60, 1000, "
                    "100, 30, true, 'create', false, false, CURRENT_TIMESTAMP)"),
                    dict(name=name, protocol=protocol, after=after))
        upgrade(revision="0007")
        with db.engine.connect() as conn:
            saved = dict(conn.execute(sa.text("SELECT name, after_processing FROM incoming_account")).all())
        assert saved == {"pop-default": "delete", "pop-keep": "seen", "imap-move": "move"}
        assert "message_claim" in sa.inspect(db.engine).get_table_names()
        downgrade(revision="0006")
        assert "message_claim" not in sa.inspect(db.engine).get_table_names()
        db.engine.dispose()
