"""Outgoing servers as the admin pages change them: edited with the same checks as
when added (the password kept unless a new one is given), and a test mail sent at once
through one server, answering with what the server said."""

import pytest

from switchboard import secrets
from switchboard.db import db
from switchboard.errors import InvalidInput, PermissionDenied
from switchboard.outbox.models import OutboxMessage
from switchboard.outbox.servers import add_server, send_test_mail, update_server
from switchboard.outbox.smtp import Outcome

from .conftest import SINK_PASSWORD, SINK_USER


def test_update_checks_like_add_and_keeps_the_password_unless_given(app, people):
    server = add_server("relay", "smtp.example.org", from_address="desk@example.org",
                        username="desk", password="first secret", security="tls")
    add_server("backup", "smtp2.example.org", from_address="desk@example.org")
    db.session.commit()
    stored = server.password_encrypted
    update_server(server, actor=people["admin"], host="mail.example.org", port=None, security="starttls",
                  priority=5, from_name="  Acme   Desk ")
    assert (server.host, server.port, server.priority, server.from_name) == ("mail.example.org", 587, 5, "Acme Desk")
    assert server.password_encrypted == stored
    update_server(server, password="second secret")
    assert secrets.decrypt(server.password_encrypted) == "second secret"
    db.session.commit()

    for changes, field in [({"name": "backup"}, "name"), ({"from_address": "nope"}, "from_address"),
                           ({"username": ""}, "username"), ({"port": 70000}, "port"),
                           ({"security": "none"}, "security")]:
        with pytest.raises(InvalidInput) as refused:
            update_server(server, **changes)
        assert refused.value.field == field, changes
        db.session.rollback()
    with pytest.raises(PermissionDenied):
        update_server(server, actor=people["anna"], priority=1)
    db.session.rollback()
    update_server(server, username="", password="")  # clearing both is fine
    assert server.username is None and server.password_encrypted is None


def test_test_mail_goes_straight_to_the_server(app, people, smtp_sink):
    server = add_server("sink", smtp_sink.host, port=smtp_sink.port, security="none",
                        from_address="desk@example.org", from_name="Acme Desk", timeout_seconds=5)
    db.session.commit()
    result = send_test_mail(server, " Admin@Example.org ", actor=people["admin"])
    assert result.outcome is Outcome.SENT and result.accepted == ["admin@example.org"]
    (received,) = smtp_sink.messages
    message = received.message
    assert message["Subject"] == "Test mail from Switchboard (sink)"
    assert message["To"] == "admin@example.org" and "Acme Desk" in message["From"]
    assert "Ada Admin" in message.get_content()
    assert db.session.scalar(db.select(db.func.count()).select_from(OutboxMessage)) == 0

    smtp_sink.faults.rcpt_replies["nobody@example.org"] = "550 5.1.1 No such user"
    refused = send_test_mail(server, "nobody@example.org")
    assert refused.refused == ["nobody@example.org"] and refused.recipients[0].code == 550
    with pytest.raises(InvalidInput) as bad:
        send_test_mail(server, "not an address")
    assert bad.value.field == "to"


def test_test_mail_reports_a_refused_login(app, smtp_sink_starttls_auth, test_pki):
    sink = smtp_sink_starttls_auth
    server = add_server("auth", sink.host, port=sink.port, security="starttls", username=SINK_USER,
                        password="wrong " + SINK_PASSWORD, trusted_ca_pem=test_pki.ca_file.read_text(),
                        from_address="desk@example.org", timeout_seconds=5)
    result = send_test_mail(server, "admin@example.org")
    assert result.outcome is not Outcome.SENT and result.stage == "auth" and result.code == 535
    assert sink.messages == []
