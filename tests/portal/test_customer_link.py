"""Customers without a password (issue 12, item 4): the link in their mail opens a read-only
page of their call, by a signed expiring token; every bad link is the same 404."""

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
import time_machine
from itsdangerous import URLSafeTimedSerializer

from switchboard.calls import customer_link
from switchboard.calls.models import Call
from switchboard.calls.services import forward_call, hold_call, log_call, update_call
from switchboard.db import db, utcnow
from switchboard.history.models import EntryKind, HistoryEntry
from switchboard.history.services import timeline
from switchboard.inbound.process import process_pending
from switchboard.inbound.store import store_message
from switchboard.outbox.manual import send_manual_mail
from switchboard.outbox.sender import send_all_due
from switchboard.outbox.servers import add_server

DESK = "desk@example.org"


def _url(call, person=None) -> str:
    return customer_link.PATH + customer_link.make_token(call.id, (person or call.customer).id)


@pytest.fixture
def call(people):
    anna, carol = people["anna"], people["carol"]
    call = log_call(anna, "Printer on floor 3 jams", "It jams on every page.", customer=carol)
    update_call(call, carol, "It also jams with the colour printer.", via="email")
    update_call(call, anna, "Fuser unit at end of life; order part 4711 from Xerox.", internal=True)
    update_call(call, anna, "A technician comes on Monday.")
    forward_call(call, anna, analyst=people["bob"], group=people["service_desk"], note="Bob knows this model.")
    hold_call(call, anna, "Waiting for the part.")
    send_manual_mail(call, anna, "orders@supplier.example", "Part 4711", "Please send part 4711 for ref 99-314.")
    send_manual_mail(call, anna, "carol@example.org", "Your printer", "The part arrives tomorrow.")
    db.session.commit()
    return call


def test_the_page_shows_what_the_customer_may_read_and_never_an_internal_entry(client, call):
    response = client.get(_url(call))
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert f'<span class="ref">{call.ref}</span> Printer on floor 3 jams' in html
    assert ">Pending<" in html  # the status, as the customer reads it
    for said in ("It jams on every page.", "It also jams with the colour printer.",
                 "A technician comes on Monday.", "Waiting for the part.", "The part arrives tomorrow."):
        assert said in html, said
    for hidden in ("Fuser unit", "4711", "Bob knows", "Bob Analyst", "Service Desk", "supplier.example",
                   "P3", "Priority", "/calls/", "/attachments/"):
        assert hidden not in html, hidden
    assert "reply to the mail this link came in" in html
    assert "<script" not in html and "csrf" not in html.lower()  # nothing of the portal's session
    assert len(response.data) < 10_000  # a phone's page


def test_the_page_sends_no_referrer_is_never_cached_and_sets_no_cookie(client, call):
    for url in (_url(call), customer_link.PATH + "nonsense"):
        response = client.get(url)
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "private, no-store"
        assert "Set-Cookie" not in response.headers


def _bad_links(call, people, other_call):
    token = customer_link.make_token(call.id, call.customer_id)
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    foreign = URLSafeTimedSerializer("test-secret", salt="another-purpose").dumps([call.id, call.customer_id])
    return {
        "another customer's call": customer_link.make_token(other_call.id, call.customer_id),
        "this call for another person": customer_link.make_token(call.id, people["dave"].id),
        "altered": flipped,
        "signed for another purpose": foreign,
        "not a token": "CALL-1",
        "too long": token * 10,
    }


def test_wrong_altered_and_foreign_tokens_all_get_the_same_404(client, call, people):
    other = log_call(people["anna"], "Dave's call", customer=people["dave"])
    db.session.commit()
    answers = {name: client.get(customer_link.PATH + token) for name, token in _bad_links(call, people, other).items()}
    bodies = {name: (r.status_code, r.data) for name, r in answers.items()}
    assert {status for status, _ in bodies.values()} == {404}
    assert len({body for _, body in bodies.values()}) == 1, "a bad link's answer tells which kind it was"
    assert b"Dave" not in next(iter(bodies.values()))[1]


def test_an_expired_link_and_one_for_a_deleted_call_get_the_same_404_as_a_wrong_one(app, client, call, people):
    url = _url(call)
    wrong = client.get(customer_link.PATH + "wrong")
    assert client.get(url).status_code == 200
    days = customer_link.link_days()
    with time_machine.travel(utcnow() + timedelta(days=days, minutes=1)):
        expired = client.get(url)
    with time_machine.travel(utcnow() + timedelta(days=days - 1)):
        assert client.get(url).status_code == 200  # a day before it ends it still works
    db.session.execute(sa.delete(Call).where(Call.id == call.id))
    db.session.commit()
    deleted = client.get(url)
    assert (expired.status_code, expired.data) == (wrong.status_code, wrong.data) == (404, wrong.data)
    assert (deleted.status_code, deleted.data) == (404, wrong.data)


def test_link_lifetime_follows_customer_link_days(app, client, call):
    url = _url(call)
    app.config["CUSTOMER_LINK_DAYS"] = "2"
    try:
        with time_machine.travel(utcnow() + timedelta(days=2, minutes=1)):
            assert client.get(url).status_code == 404
        with time_machine.travel(utcnow() + timedelta(days=1)):
            assert client.get(url).status_code == 200
        app.config["CUSTOMER_LINK_DAYS"] = "soon"  # not a number: the default, and a warning
        with time_machine.travel(utcnow() + timedelta(days=89)):
            assert client.get(url).status_code == 200
    finally:
        app.config.pop("CUSTOMER_LINK_DAYS")


def test_the_link_in_a_real_acknowledgement_opens_the_call_and_stays_off_the_timeline(
        app, client, people, smtp_sink):
    add_server("sink", smtp_sink.host, port=smtp_sink.port, security="none", from_address=DESK,
               timeout_seconds=5)
    db.session.commit()
    raw = (b"From: Carol Customer <carol@example.org>\r\nTo: desk@example.org\r\n"
           b"Subject: Scanner is broken\r\nMessage-ID: <link-1@example.org>\r\n\r\nIt shows error 5.\r\n")
    store_message(raw, source="lmtp", envelope_to=[DESK])
    db.session.commit()
    process_pending()
    assert send_all_due().sent == 1

    [ack] = smtp_sink.messages
    text = ack.message.get_body(("plain",)).get_content()
    [link] = re.findall(r"Follow it online: (\S+)", text)
    assert link.startswith("http://127.0.0.1:5000/follow/")
    page = client.get(link.removeprefix("http://127.0.0.1:5000"))
    html = page.get_data(as_text=True)
    [call] = db.session.scalars(sa.select(Call)).all()
    assert page.status_code == 200 and call.ref in html and "It shows error 5." in html

    token = link.rsplit("/", 1)[1]
    db.session.expire_all()
    sent = [e for e in timeline(call) if e.kind is EntryKind.EMAIL_OUT]
    assert sent and all(token not in (e.body or "") for e in sent)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(HistoryEntry).where(
        HistoryEntry.body.contains(token))) == 0


def test_analysts_mail_still_links_to_the_portal(app, people, smtp_sink):
    add_server("sink", smtp_sink.host, port=smtp_sink.port, security="none", from_address=DESK,
               timeout_seconds=5)
    call = log_call(people["anna"], "Server down", customer=people["carol"])
    forward_call(call, people["anna"], analyst=people["bob"])
    db.session.commit()
    send_all_due()
    to_bob = [m for m in smtp_sink.messages if m.rcpt_tos == ["bob@desk.test"]]
    assert to_bob and f"/calls/{call.id}" in to_bob[0].message.get_body(("plain",)).get_content()


def test_a_failing_page_logs_the_error_without_the_token(app, client, call, caplog, monkeypatch):
    url = _url(call)
    token = url.rsplit("/", 1)[1]

    def broken(_call, limit=customer_link.SHOWN):
        raise RuntimeError("database went away")

    monkeypatch.setattr("portal.customer_link.customer_timeline", broken)  # a fault injected, not a mock of a server
    with caplog.at_level("ERROR"):
        response = client.get(url)
    assert response.status_code == 500 and response.headers["Cache-Control"] == "private, no-store"
    assert "database went away" in caplog.text  # the error is logged...
    assert token not in caplog.text  # ...and the credential is not
