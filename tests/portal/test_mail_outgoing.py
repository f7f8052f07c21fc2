"""Outgoing servers (added, edited with a write-only password, deactivated,
a test mail to a real SMTP sink with the answer shown at once) and the
outbox monitor (filters, a mail's detail, requeue and cancel)."""

import re
from html import escape

from switchboard import secrets
from switchboard.db import db
from switchboard.outbox.catalogue import MessageType
from switchboard.outbox.models import OutboxMessage, OutboxStatus, OutgoingServer
from switchboard.outbox.queue import queue_mail
from switchboard.outbox.servers import find_server
from tests.portal.conftest import count, field_error, is_fragment


def _server_form(sink, **values) -> dict:
    form = {"name": "Sink", "host": sink.host, "port": str(sink.port), "security": "none", "username": "",
            "password": "", "trusted_ca_pem": "", "from_address": "desk@example.org", "from_name": "Acme Desk",
            "priority": "10", "timeout_seconds": "5"}
    form.update(values)
    return form


def test_add_edit_and_deactivate_a_server_keeping_the_password_secret(login, people, smtp_sink):
    portal = login("admin")
    response = portal.post("/admin/mail/servers/new", _server_form(smtp_sink, username="relay",
                                                                    password="relay secret 1"))
    assert response.status_code == 303
    server = find_server("Sink")
    assert secrets.decrypt(server.password_encrypted) == "relay secret 1"
    listing = portal.get("/admin/mail/servers").get_data(as_text=True)
    assert "Server Sink added." in listing and f"{smtp_sink.host}:{smtp_sink.port}" in listing
    page = portal.get(f"/admin/mail/servers/{server.id}").get_data(as_text=True)
    assert "relay secret 1" not in page and server.password_encrypted not in page
    assert 'value=""' in re.search(r'<input[^>]*name="password"[^>]*>', page).group(0)

    stored = server.password_encrypted
    response = portal.post(f"/admin/mail/servers/{server.id}", _server_form(smtp_sink, username="relay", priority="1",
                                                                            from_name="IT Desk"))
    assert response.status_code == 303
    db.session.expire_all()
    assert (server.priority, server.from_name, server.password_encrypted) == (1, "IT Desk", stored)

    response = portal.post(f"/admin/mail/servers/{server.id}", _server_form(smtp_sink, from_address="nobody",
                                                                            password="another secret"))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "from_address") == "Not a valid From address: &#39;nobody&#39;."
    assert "another secret" not in page
    response = portal.post("/admin/mail/servers/new", _server_form(smtp_sink, name=" Sink "))
    assert field_error(response.get_data(as_text=True), "name") == "There is an outgoing server named &#39;Sink&#39; already."
    assert count(OutgoingServer) == 1

    assert portal.post(f"/admin/mail/servers/{server.id}/deactivate").status_code == 303
    db.session.expire_all()
    assert not server.active and "Inactive" in portal.get("/admin/mail/servers").get_data(as_text=True)
    assert portal.post(f"/admin/mail/servers/{server.id}/reactivate").status_code == 303
    db.session.expire_all()
    assert server.active


def test_a_test_mail_reaches_the_sink_and_the_answer_shows_at_once(login, people, smtp_sink):
    portal = login("admin")
    portal.post("/admin/mail/servers/new", _server_form(smtp_sink))
    server = find_server("Sink")
    page = portal.get(f"/admin/mail/servers/{server.id}").get_data(as_text=True)
    # Their own address to start with.
    assert 'value="admin@desk.test"' in re.search(r'<input[^>]*name="test-to"[^>]*>', page).group(0)

    response = portal.post(f"/admin/mail/servers/{server.id}/test", {"test-to": "anna@desk.test"}, htmx=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and is_fragment(html)
    assert "Sink accepted the test mail for anna@desk.test: 250" in html
    (received,) = smtp_sink.messages
    assert received.rcpt_tos == ["anna@desk.test"] and received.message["Subject"] == "Test mail from Switchboard (Sink)"
    assert count(OutboxMessage) == 0  # straight to the server, not through the outbox

    smtp_sink.faults.rcpt_replies["gone@example.org"] = "550 5.1.1 No such mailbox"
    response = portal.post(f"/admin/mail/servers/{server.id}/test", {"test-to": "gone@example.org"})
    assert response.status_code == 303
    page = portal.get(response.headers["Location"]).get_data(as_text=True)
    assert "Sink did not take the test mail (rcpt failed): 550 5.1.1 No such mailbox" in page

    response = portal.post(f"/admin/mail/servers/{server.id}/test", {"test-to": ""})
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "test-to") == "Give an address."
    smtp_sink.stop()
    html = portal.post(f"/admin/mail/servers/{server.id}/test", {"test-to": "anna@desk.test"},
                       htmx=True).get_data(as_text=True)
    assert "flash-error" in html and "Sink did not take the test mail (connect failed)" in html
    assert len(smtp_sink.messages) == 1


def _outbox(people):
    failed = queue_mail(MessageType.MANUAL_MESSAGE, ["carol@example.org"], subject="Your laptop", text="Ready.",
                        automatic=False)
    failed.status, failed.attempts, failed.last_code = OutboxStatus.FAILED, 1, 550
    failed.last_message = "550 5.1.1 No such mailbox"
    failed.recipient_results = {"carol@example.org": {"outcome": "permanent", "code": 550,
                                                      "message": "5.1.1 No such mailbox"}}
    sent = queue_mail(MessageType.CALL_LOGGED, ["dave@example.org"], template_key="call_logged",
                      context={"call": {"_label": "CALL-7", "ref": "CALL-7", "summary": "VPN"}})
    sent.status = OutboxStatus.SENT
    db.session.commit()
    return failed, sent


def test_the_outbox_filters_shows_a_mail_and_requeues_or_cancels_it(login, people):
    failed, sent = _outbox(people)
    portal = login("admin")
    page = portal.get("/admin/mail/outbox").get_data(as_text=True)
    assert "2 mails" in page and "Your laptop" in page and "Call logged" in page

    def shown(**query):
        response = portal.get("/admin/mail/outbox", query_string=query, headers={"HX-Request": "true"})
        assert is_fragment(response.get_data(as_text=True))
        return re.findall(r'href="/admin/mail/outbox/(\d+)"', response.get_data(as_text=True))

    assert shown(status="failed") == [str(failed.id)]
    assert shown(type=str(int(MessageType.CALL_LOGGED))) == [str(sent.id)]
    assert shown(status="queued") == []

    page = portal.get(f"/admin/mail/outbox/{failed.id}").get_data(as_text=True)
    for text in ("carol@example.org", "Ready.", "550 5.1.1 No such mailbox", escape(failed.message_id), "permanent",
                 "Send again", "Cancel"):
        assert text in page, text
    page = portal.get(f"/admin/mail/outbox/{sent.id}").get_data(as_text=True)
    assert "Written from the template" in page and "CALL-7" in page
    assert "Send again" not in page and 'change=cancel' not in page and "/cancel" not in page

    response = portal.post(f"/admin/mail/outbox/{failed.id}/requeue")
    assert response.status_code == 303
    assert "Queued again" in portal.get(response.headers["Location"]).get_data(as_text=True)
    db.session.expire_all()
    assert failed.status is OutboxStatus.QUEUED and failed.attempts == 0
    assert portal.post(f"/admin/mail/outbox/{failed.id}/cancel").status_code == 303
    db.session.expire_all()
    assert failed.status is OutboxStatus.CANCELLED
    response = portal.post(f"/admin/mail/outbox/{sent.id}/cancel")
    assert response.status_code == 409 and "only queued, deferred or failed mail can be cancelled" in response.get_data(
        as_text=True)
    db.session.expire_all()
    assert sent.status is OutboxStatus.SENT
    portal.logout()
    portal = login("anna")
    assert portal.post(f"/admin/mail/outbox/{failed.id}/requeue").status_code == 403
