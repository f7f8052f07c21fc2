"""The admin's health page, and what the inbound log shows of a message whose
raw mail housekeeping pruned."""

from datetime import timedelta
from email.message import EmailMessage

from switchboard.calls.services import close_call
from switchboard.db import db, utcnow
from switchboard.health.beat import record_run, register_jobs
from switchboard.housekeeping import prune
from switchboard.inbound.accounts import create_account
from switchboard.inbound.models import InboundMessage
from switchboard.inbound.process import process_pending
from switchboard.inbound.store import store_message


def test_the_health_page_shows_jobs_accounts_and_the_outbox_to_admins_only(login, people, client):
    register_jobs({"send-outbox": 5, "poll-accounts": 5})
    record_run("send-outbox", 5, utcnow(), 0.25, "SMTPServerDisconnected: <b>gone</b>")
    account = create_account("support", "imap", host="127.0.0.1", port=1, security="none", username="u",
                             password="p")
    account.last_poll_at = account.last_error_at = utcnow()
    account.last_error = "cannot connect to 127.0.0.1:1: connection refused"
    account.failing_since = utcnow() - timedelta(hours=2)
    db.session.commit()

    assert client.get("/admin/health").status_code == 302  # to the login page
    assert login("anna").get("/admin/health").status_code == 403
    login("anna").logout()
    page = login("admin").get("/admin/health").get_data(as_text=True)
    assert "send-outbox" in page and "0.250 s" in page
    assert "SMTPServerDisconnected: &lt;b&gt;gone&lt;/b&gt;" in page  # escaped, never markup
    assert "poll-accounts" in page and "never" in page  # registered, not run yet
    assert "support" in page and "connection refused" in page
    assert "account support has failed since" in page  # the alarm after an hour
    assert "Nothing is due." in page


def test_a_message_whose_raw_mail_was_pruned_still_shows_what_it_said(login, people, app, monkeypatch):
    monkeypatch.setitem(app.config, "HOUSEKEEPING_RAW_MAIL_DAYS", 30)
    msg = EmailMessage()
    msg["From"] = "carol@example.org"
    msg["Subject"] = "Old printer trouble"
    msg.set_content("It jammed, long ago.")
    msg.add_attachment(b"\x89PNG fake", maintype="image", subtype="png", filename="jam.png")
    stored = store_message(msg.as_bytes(), source="pipe")
    db.session.commit()
    process_pending()
    message = db.session.get(InboundMessage, stored.inbound_id)
    close_call(message.call, people["anna"])
    message.received_at = utcnow() - timedelta(days=40)
    db.session.commit()
    assert prune().raw_messages == 1

    portal = login("admin")
    page = portal.get(f"/admin/mail/inbound/{message.id}").get_data(as_text=True)
    assert "It jammed, long ago." in page and "jam.png" in page
    assert "Housekeeping pruned the raw message" in page
    assert f"/admin/mail/inbound/{message.id}/raw" not in page
    raw = portal.get(f"/admin/mail/inbound/{message.id}/raw")
    assert raw.status_code == 404 and "HOUSEKEEPING_RAW_MAIL_DAYS" in raw.get_data(as_text=True)
    assert portal.get(f"/admin/mail/inbound/{message.id}/files/1").status_code == 404
