"""A note an analyst adds for the customer to see is mailed to the customer
(issue 10, item 18: the message type "Call updated by the desk", on by default,
with its switch in the notification settings); the note form says beforehand who
will be mailed; an internal note never is. Through the portal's form and the
loopback SMTP server."""

import html

import pytest

from switchboard.calls.services import log_call
from switchboard.db import db
from switchboard.outbox import settings
from switchboard.outbox.catalogue import MessageType
from tests.portal.conftest import _fresh_g_per_request, client, login, portal  # noqa: F401

from .desk import desk_server, rows, send  # noqa: F401


@pytest.fixture
def call(people):
    made = log_call(people["anna"], "Printer jams on every page", customer=people["carol"])
    db.session.commit()
    send()  # the acknowledgement of the call itself, out of the way
    return made


def form_hint(page: str) -> str:
    return html.unescape(page.split('id="update-internal-hint">', 1)[1].split("</p>", 1)[0])


def test_a_note_the_customer_can_see_is_mailed_to_them_and_the_form_says_so(desk_server, call, login, people):
    desk_server.messages.clear()
    portal = login("anna")
    page = portal.get(f"/calls/{call.id}").get_data(as_text=True)
    assert form_hint(page).startswith("Unticked, the note is mailed to Carol Customer <carol@example.org>.")
    response = portal.post(f"/calls/{call.id}/update", {"update-note": "The new fuser arrives on Thursday."})
    assert response.status_code == 303, response.get_data(as_text=True)
    assert send().sent == 1
    [received] = desk_server.messages
    assert received.rcpt_tos == ["carol@example.org"]
    mail = received.message
    assert mail["Subject"].startswith(f"{call.ref} updated: Printer jams on every page")
    text = mail.get_body(("plain",)).get_content()
    assert "Anna Analyst added a note to your call" in text and "The new fuser arrives on Thursday." in text
    [row] = rows(message_type=int(MessageType.CALL_UPDATED_BY_DESK))
    assert row.recipient_person_id == people["carol"].id


def test_an_internal_note_is_never_mailed(desk_server, call, login):
    desk_server.messages.clear()
    portal = login("anna")
    response = portal.post(f"/calls/{call.id}/update",
                           {"update-note": "Customer is difficult, be patient.", "update-internal": "y"})
    assert response.status_code == 303
    assert send().sent == 0 and desk_server.messages == []
    assert rows(message_type=int(MessageType.CALL_UPDATED_BY_DESK)) == []


def test_with_the_switch_off_the_form_says_nobody_is_mailed_and_nobody_is(desk_server, call, login, people):
    settings.set_switch("email_customer_on_desk_note", False, people["admin"])
    db.session.commit()
    desk_server.messages.clear()
    portal = login("anna")
    page = portal.get(f"/calls/{call.id}").get_data(as_text=True)
    assert "nobody is mailed (turned off in the notification settings)" in form_hint(page)
    portal.post(f"/calls/{call.id}/update", {"update-note": "Ordered the part."})
    assert send().sent == 0 and desk_server.messages == []
