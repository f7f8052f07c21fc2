"""CR/LF in names typed into the portal: refused beside the field (422,
nothing stored), and names that reach mail another way (a script, the
command line) are flattened to one line before any mail is composed."""

import pytest
import sqlalchemy as sa

from portal.forms import ONE_LINE_MESSAGE
from switchboard.calls.models import Call, Priority
from switchboard.calls.services import log_call
from switchboard.db import db
from switchboard.people.models import Group, Person
from switchboard.people.services import create_person
from switchboard.requests.models import Request
from tests.outbox.desk import desk_server, send  # noqa: F401  (fixture)
from tests.portal.conftest import count, field_error

INJECTION = "Printer\r\nBcc: victim@example.net"

# url, form, the field holding the injection (its id on the page), what must not appear
FORMS = [
    ("/admin/people/new", {"email": "eve@example.org", "name": INJECTION, "customer": "y"}, "name", Person),
    ("/admin/groups", {"name": INJECTION, "email": ""}, "name", Group),
    ("/calls/new", {"customer_email": "carol@example.org", "summary": INJECTION, "priority": "3"}, "summary", Call),
    ("/calls/new", {"customer_email": "new@example.org", "customer_name": "New\nCustomer", "summary": "Printer",
                    "priority": "3"}, "customer_name", Call),
    ("/requests/new", {"title": INJECTION, "requester_email": ""}, "title", Request),
]


@pytest.mark.parametrize("url, form, field, model", FORMS, ids=[f"{u} {f}" for u, _, f, _ in FORMS])
def test_the_portal_refuses_line_breaks_beside_the_field(login, people, url, form, field, model):
    portal = login("admin")
    before = count(model)
    response = portal.post(url, form)
    assert response.status_code == 422, response.status_code
    assert field_error(response.get_data(as_text=True), field) == ONE_LINE_MESSAGE
    assert count(model) == before
    assert db.session.scalar(sa.select(Person).where(Person.email == "new@example.org")) is None
    # The same form on one line goes through.
    fixed = {k: (" ".join(v.split()) if isinstance(v, str) else v) for k, v in form.items()}
    assert portal.post(url, fixed).status_code in (302, 303)
    assert count(model) == before + 1


def test_the_priority_rename_refuses_them_too(login, people):
    portal = login("admin")
    response = portal.post("/admin/priorities/3", {"p3-name": "Low\r\nX-Evil: 1"})
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "p3-name") == ONE_LINE_MESSAGE
    db.session.rollback()
    assert "X-Evil" not in db.session.get(Priority, 3).name


def test_names_from_elsewhere_reach_mail_on_one_line(app, people, desk_server):
    # Not through the portal: a script (or `users create-admin --name`) and a call logged for that person.
    victim = create_person("frank@example.org", "Frank\r\nBcc: victim@example.net\r\n\r\nPay this invoice")
    db.session.flush()
    assert victim.name == "Frank Bcc: victim@example.net Pay this invoice"
    log_call(people["anna"], INJECTION, customer=victim)
    db.session.commit()
    send()
    [received] = desk_server.messages
    assert received.rcpt_tos == ["frank@example.org"]  # nobody else, whatever the name said
    mail = received.message
    assert mail.get_all("Bcc") is None
    assert "\n" not in mail["Subject"] and "Printer Bcc: victim@example.net" in mail["Subject"]
    assert "\n" not in str(mail["To"])
    body = mail.get_body(("plain",)).get_content()
    assert "\nPay this invoice" not in body and "\nBcc:" not in body
