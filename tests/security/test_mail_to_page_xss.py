"""Script from mail onto the portal's pages (XSS): a call logged by mail whose subject, From
name, text, HTML part and attachment file names carry markup, then every page that shows
them, to an admin and on the customer's link. Each must show the text, escaped; the mail's
HTML goes out sanitised, and a file name cannot add a header to its download."""

import re
from email.message import EmailMessage

import sqlalchemy as sa

from switchboard.calls import customer_link
from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.history.models import Attachment
from switchboard.inbound.models import InboundMessage
from tests.security.test_reply_limits import acted_on

TAG = '<img src=x onerror=alert(1)>'
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"
ATTR = '"><svg onload=alert(2)>'
HTMX = '<div hx-post="/logout" hx-trigger="load">x</div>'


def _hostile_mail() -> bytes:
    mail = EmailMessage()
    mail["From"] = f'"Eve {TAG}" <eve@attacker.example>'
    mail["To"] = "help@desk.test"
    mail["Subject"] = f"Printer {TAG} {ATTR}"
    mail["Message-ID"] = "<xss-1@attacker.example>"
    mail["Date"] = "Mon, 03 Mar 2025 09:15:00 +0000"
    mail.set_content(f"It burns {TAG} {ATTR} {HTMX}\n")
    mail.add_alternative(f"<p>It burns</p><script>alert(3)</script>{TAG}<a href=\"javascript:alert(4)\">x</a>"
                         f"{HTMX}", subtype="html")
    mail.add_attachment(b"hello", maintype="text", subtype="plain", filename=f"notes{ATTR}.txt")
    raw = mail.as_bytes()
    # A file name that, decoded (RFC 2231), carries a line break and a header of its own;
    # written by hand, as no mail library would write it.
    boundary = mail.get_boundary().encode()
    evil = (b"--" + boundary + b"\nContent-Type: text/plain\n"
            b"Content-Disposition: attachment; filename*=utf-8''report%0D%0AX-Injected%3A%201.txt\n\nhello\n")
    head, tail = raw.rsplit(b"--" + boundary + b"--", 1)
    return head + evil + b"--" + boundary + b"--" + tail


def _no_live_markup(url: str, html: str) -> None:
    for live in ("<img src=x onerror", "<svg onload", "<script>alert", 'hx-post="/logout"', "javascript:alert"):
        assert live not in html, (url, live)


def test_markup_in_mail_is_shown_as_text_on_every_page(app, desk_accounts, client, login, people):
    [inbound] = acted_on([_hostile_mail()])
    assert "Logged CALL-" in inbound.outcome, inbound.outcome
    call = db.session.scalar(sa.select(Call))
    portal = login("admin")
    pages = {url: portal.get(url) for url in (
        "/", "/calls/", f"/calls/{call.id}", "/calls/?q=Printer",
        "/admin/mail/inbound", f"/admin/mail/inbound/{inbound.id}", "/admin/people")}
    link = customer_link.PATH + customer_link.make_token(call.id, call.customer_id)
    pages[link] = client.get(link)
    for url, response in pages.items():
        assert response.status_code == 200, (url, response.status_code)
        _no_live_markup(url, response.get_data(as_text=True))
    # The text is there, escaped: the pages did render what the attacker wrote.
    call_page = pages[f"/calls/{call.id}"].get_data(as_text=True)
    assert call_page.count(ESCAPED) >= 2  # the summary and the mail's text
    # Both files are listed (their names made safe as they were stored).
    assert re.search(r'<a href="/attachments/\d+" download>notes[^<]*\.txt</a>', call_page)
    assert re.search(r'<a href="/attachments/\d+" download>report[^<]*\.txt</a>', call_page)
    assert ESCAPED in pages[link].get_data(as_text=True)

    # The mail's own HTML, as the admin's inbound page frames it: sanitised, in a sandbox.
    frame = portal.get(f"/admin/mail/inbound/{inbound.id}/html")
    assert frame.status_code == 200
    assert "sandbox" in frame.headers["Content-Security-Policy"]
    body = frame.get_data(as_text=True)
    assert "It burns" in body
    assert not re.search(r"<script|onerror|javascript:|hx-post", body, re.I), body

    # Every file downloads as a file, with no header the name tried to add.
    for attachment in db.session.scalars(sa.select(Attachment)):
        response = portal.get(f"/attachments/{attachment.id}")
        assert response.status_code == 200
        assert response.headers.get("X-Injected") is None
        assert response.headers["Content-Disposition"].startswith("attachment;")
        assert "\n" not in response.headers["Content-Disposition"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(InboundMessage)) == 1
