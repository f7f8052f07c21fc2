"""The inbound log: filtering (live with htmx), a message opened with its
headers, text, files and outcome, downloads that never open in the browser,
the HTML only in a sandbox, and reprocessing a message that failed."""

import re
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import pytest

from switchboard.db import db, utcnow
from switchboard.inbound import process
from switchboard.inbound.accounts import create_account
from switchboard.inbound.models import InboundMessage, InboundStatus
from switchboard.inbound.process import process_pending
from switchboard.inbound.store import store_message
from tests.portal.conftest import is_fragment


def _mail(subject: str, sender: str = "carol@example.org", *, text: str = "Hello desk", html: str | None = None,
          files=()) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "help@desk.test"
    msg["Subject"] = subject
    msg["Date"] = formatdate()
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for filename, content_type, data in files:
        maintype, subtype = content_type.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def _store(raw: bytes, account=None) -> InboundMessage:
    stored = store_message(raw, source="lmtp" if account else "pipe", account=account, envelope_from="carol@example.org",
                           envelope_to=["help@desk.test"])
    db.session.commit()
    return db.session.get(InboundMessage, stored.inbound_id)


@pytest.fixture
def log(people):
    """A processed message through an account, one ignored (an auto-reply) without one."""
    account = create_account("Help", "lmtp", addresses=["help@desk.test"])
    db.session.commit()
    printer = _store(_mail("Printer on floor 3 jams", text="Every page, tray 2."), account)
    auto = _store(_mail("Out of office", "dave@example.org").replace(
        b"Subject:", b"Auto-Submitted: auto-replied\r\nSubject:", 1))
    process_pending()
    db.session.expire_all()
    return {"account": account, "printer": printer, "auto": auto}


def _subjects(html: str) -> list[str]:
    return re.findall(r'<a class="item-title" href="/admin/mail/inbound/\d+">(.*?)</a>', html)


def test_the_log_filters_by_outcome_account_dates_and_text(login, log):
    portal = login("admin")
    page = portal.get("/admin/mail/inbound").get_data(as_text=True)
    assert _subjects(page) == ["Out of office", "Printer on floor 3 jams"]  # newest first
    assert "Processed" in page and "Ignored" in page and "2 messages" in page

    def shown(**query) -> list[str]:
        response = portal.get("/admin/mail/inbound", query_string=query, headers={"HX-Request": "true"})
        html = response.get_data(as_text=True)
        assert response.status_code == 200 and is_fragment(html)
        assert "HX-Request" in response.headers["Vary"]
        return _subjects(html)

    assert shown(status="processed") == ["Printer on floor 3 jams"]
    assert shown(status="ignored") == ["Out of office"]
    assert shown(status="failed") == []
    assert shown(account=str(log["account"].id)) == ["Printer on floor 3 jams"]
    assert shown(account="none") == ["Out of office"]
    today = utcnow().date()
    assert shown(since=today.isoformat(), until=today.isoformat()) == ["Out of office", "Printer on floor 3 jams"]
    assert shown(since=(today + timedelta(days=1)).isoformat()) == []
    assert shown(until=(today - timedelta(days=1)).isoformat()) == []
    assert shown(q="PRINTER") == ["Printer on floor 3 jams"]
    assert shown(q="dave@") == ["Out of office"]
    assert shown(status="nonsense", since="not a date") == ["Out of office", "Printer on floor 3 jams"]


def test_a_message_shows_its_outcome_headers_text_and_files(login, log, people):
    raw = _mail("Screen flickers", text="Since the update.\nSee the photo.",
                html='<p onclick="steal()">Since the <b>update</b></p><script>alert(1)</script>'
                     '<img src="https://tracker.example/pixel.gif">',
                files=[("photo.png", "image/png", b"\x89PNG fake"), ("page.html", "text/html", b"<script>x</script>")])
    message = _store(raw, log["account"])
    process_pending()
    db.session.expire_all()
    portal = login("admin")
    page = portal.get(f"/admin/mail/inbound/{message.id}").get_data(as_text=True)
    call = message.call
    assert message.status is InboundStatus.PROCESSED and call is not None
    assert f'href="/calls/{call.id}"' in page and call.ref in page
    assert message.outcome in page
    assert "Since the update.\nSee the photo." in page
    assert "<th scope=\"row\">Message-ID</th>" in page and message.message_id in page
    assert "help@desk.test" in page  # envelope
    assert "<script>alert(1)</script>" not in page and "steal()" not in page
    assert f'<iframe src="/admin/mail/inbound/{message.id}/html" sandbox=""' in page
    assert "photo.png" in page and "page.html" in page

    html = portal.get(f"/admin/mail/inbound/{message.id}/html")
    csp = html.headers["Content-Security-Policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp and "frame-ancestors 'self'" in csp
    assert "script-src" not in csp and "img-src data:" in csp
    assert html.headers["X-Frame-Options"] == "SAMEORIGIN"
    body = html.get_data(as_text=True)
    assert "<b>update</b>" in body and "<script" not in body and "onclick" not in body

    for number, name, served_as in [(1, "photo.png", "image/png"), (2, "page.html", "application/octet-stream")]:
        response = portal.get(f"/admin/mail/inbound/{message.id}/files/{number}")
        assert response.status_code == 200
        assert response.headers["Content-Disposition"].startswith("attachment;") and name in response.headers[
            "Content-Disposition"]
        assert response.mimetype == served_as and "sandbox" in response.headers["Content-Security-Policy"]
    assert portal.get(f"/admin/mail/inbound/{message.id}/files/3").status_code == 404

    response = portal.get(f"/admin/mail/inbound/{message.id}/raw")
    assert response.status_code == 200 and response.data == raw
    assert response.mimetype == "application/octet-stream"
    assert response.headers["Content-Disposition"] == f"attachment; filename=message-{message.id}.eml"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response.headers["Content-Security-Policy"]

    # Plain text mail has no HTML to show.
    assert portal.get(f"/admin/mail/inbound/{log['printer'].id}/html").status_code == 404
    assert portal.get("/admin/mail/inbound/999").status_code == 404


def test_a_failed_message_shows_its_error_and_can_be_reprocessed(login, people, monkeypatch):
    real_act = process.act
    calls = []
    broken = [True]

    def act_that_fails_until_mended(inbound, msg):
        calls.append(inbound.id)
        if broken[0]:
            raise RuntimeError("the database went away for a moment")
        return real_act(inbound, msg)

    monkeypatch.setattr(process, "act", act_that_fails_until_mended)
    message = _store(_mail("Keyboard missing keys"))
    process_pending()
    db.session.expire_all()
    assert message.status is InboundStatus.FAILED
    # Tried with its batch, then alone: both failed.
    assert calls == [message.id, message.id]
    broken[0] = False

    portal = login("admin")
    assert "Keyboard missing keys" in portal.get("/admin/mail/inbound?status=failed").get_data(as_text=True)
    page = portal.get(f"/admin/mail/inbound/{message.id}").get_data(as_text=True)
    assert "an admin can reprocess it" in page
    assert "RuntimeError: the database went away for a moment" in page  # the traceback, for the admin
    assert f'action="/admin/mail/inbound/{message.id}/reprocess"' in page

    response = portal.post(f"/admin/mail/inbound/{message.id}/reprocess")
    assert response.status_code == 303
    page = portal.get(response.headers["Location"]).get_data(as_text=True)
    db.session.expire_all()
    assert message.status is InboundStatus.PROCESSED and message.call is not None and message.error is None
    assert "Reprocessed: processed." in page and f'href="/calls/{message.call.id}"' in page
    assert "/reprocess" not in page
    # Once processed, it is not acted on twice.
    assert portal.post(f"/admin/mail/inbound/{message.id}/reprocess").status_code == 409
    assert calls == [message.id] * 3


def test_reprocess_needs_the_csrf_token_and_an_admin(login, people, client):
    message = _store(_mail("Hello"))
    portal = login("anna")
    assert portal.post(f"/admin/mail/inbound/{message.id}/reprocess").status_code == 403
    portal.logout()
    portal = login("admin")
    assert "Ada Admin" in portal.get("/").get_data(as_text=True)
    response = portal.client.post(f"/admin/mail/inbound/{message.id}/reprocess", data={})
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    db.session.expire_all()
    assert message.status is InboundStatus.NEW and message.attempts == 0
