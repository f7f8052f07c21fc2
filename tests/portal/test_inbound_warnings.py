"""Parser warnings (issue 10, item 9): kept on the inbound message, listed on its admin page,
marked with a badge in the inbound log, and counted in `desk stats --json`."""

import json
import re

from switchboard.db import db
from switchboard.inbound.accounts import create_account
from switchboard.inbound.models import InboundMessage
from switchboard.inbound.process import process_pending
from switchboard.inbound.store import store_message


def _mail(subject: str, charset: str) -> bytes:
    return (f"From: carol@example.org\r\nTo: help@desk.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{abs(hash(subject))}@example.org>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset={charset}\r\n\r\nThe projector in room 4 is dead.\r\n").encode()


def _stored(app):
    account = create_account("Help", "lmtp", addresses=["help@desk.test"])
    db.session.commit()
    ids = [store_message(_mail(subject, charset), source="lmtp", account=account, envelope_to=["help@desk.test"]
                         ).inbound_id
           for subject, charset in (("Clean mail", "utf-8"), ("Odd charset", "x-klingon-1"))]
    db.session.commit()
    process_pending()
    db.session.expire_all()
    return [db.session.get(InboundMessage, i) for i in ids]


def test_warnings_show_on_the_message_page_and_as_a_badge_in_the_log(app, login):
    clean, odd = _stored(app)
    assert clean.warnings == [] and odd.warnings == ["unknown charset 'x-klingon-1' in part text/plain: guessed"]
    portal = login("admin")
    page = portal.get("/admin/mail/inbound").get_data(as_text=True)
    items = dict(re.findall(r'<a class="item-title" href="/admin/mail/inbound/\d+">(.*?)</a>(.*?)</li>', page, re.S))
    assert "1 warning</span>" in items["Odd charset"] and "warnings-badge" in items["Odd charset"]
    assert "warning" not in items["Clean mail"]
    # The live (htmx) filter renders the same list.
    fragment = portal.get("/admin/mail/inbound", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.count("warnings-badge") == 1

    page = portal.get(f"/admin/mail/inbound/{odd.id}").get_data(as_text=True)
    assert "Reading it" in page and "unknown charset &#39;x-klingon-1&#39; in part text/plain: guessed" in page
    assert "Reading it" not in portal.get(f"/admin/mail/inbound/{clean.id}").get_data(as_text=True)


def test_desk_stats_counts_inbound_messages_with_warnings(app):
    assert json.loads(app.test_cli_runner().invoke(args=["desk", "stats", "--json"]).output)["inbound"][
        "warnings"] == 0
    _stored(app)
    data = json.loads(app.test_cli_runner().invoke(args=["desk", "stats", "--json"]).output)
    assert data["inbound"]["warnings"] == 1 and data["inbound"]["processed"] == 2
