"""Mail from an analyst's day: a mail written from the call page (queued,
on the timeline at once), the forward form's "email the new owner" choice
when the admin allows it, and opting out of non-essential mail."""

import sqlalchemy as sa

from switchboard.calls.services import log_call
from switchboard.db import db
from switchboard.history.models import Attachment
from switchboard.history.services import NewAttachment
from switchboard.outbox import settings
from switchboard.outbox.catalogue import MessageType
from switchboard.outbox.models import OutboxMessage
from switchboard.requests.models import TaskKind
from switchboard.requests.services import TaskSpec, create_request
from tests.portal.conftest import field_error, is_fragment


def _mails(**where) -> list[OutboxMessage]:
    db.session.expire_all()
    query = sa.select(OutboxMessage).order_by(OutboxMessage.id)
    for name, value in where.items():
        query = query.where(getattr(OutboxMessage, name) == value)
    return list(db.session.scalars(query))


def _call(people, **kwargs):
    call = log_call(people["anna"], "Printer jams", customer=people["carol"], **kwargs)
    db.session.commit()
    return call


def test_an_analyst_mails_the_customer_from_the_call(login, people):
    call = _call(people, attachments=[NewAttachment("error.png", "image/png", b"\x89PNG fake")])
    photo = db.session.scalars(sa.select(Attachment)).one()
    before = len(_mails())
    portal = login("bob")
    page = portal.get(f"/calls/{call.id}?form=mail").get_data(as_text=True)  # the mail form open
    assert 'name="mail-to" type="text" value="carol@example.org"' in page
    assert f'value="{call.ref}: Printer jams"' in page and "error.png" in page

    response = portal.post(f"/calls/{call.id}/mail", {
        "mail-to": "carol@example.org, dave@example.org", "mail-subject": "About your printer",
        "mail-text": "An engineer comes tomorrow.", "mail-attachments": [str(photo.id)]})
    assert response.status_code == 303
    page = portal.get(f"/calls/{call.id}").get_data(as_text=True)
    assert "Mail queued" in page
    assert "Mail to carol@example.org, dave@example.org: About your printer" in page
    assert "An engineer comes tomorrow." in page
    (mail,) = _mails(message_type=int(MessageType.MANUAL_MESSAGE))
    assert mail.to == ["carol@example.org", "dave@example.org"] and mail.subject == "About your printer"
    assert mail.call_id == call.id and not mail.automatic
    assert mail.attachments == [{"sha256": photo.blob_sha256, "filename": "error.png", "content_type": "image/png"}]
    assert len(_mails()) == before + 1

    # With the desk's letter, as an htmx action: the call's fragment comes back.
    response = portal.post(f"/calls/{call.id}/mail", {
        "mail-to": "carol@example.org", "mail-subject": "", "mail-text": "Fixed now.", "mail-use_template": "y"},
        htmx=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and is_fragment(html) and "Mail queued" in html
    assert _mails(message_type=int(MessageType.MANUAL_MESSAGE))[-1].template_key == "manual_message"


def test_a_bad_mail_is_refused_beside_its_field(login, people):
    call = _call(people, attachments=[NewAttachment("mine.png", "image/png", b"png")])
    other = log_call(people["anna"], "Other", customer=people["dave"],
                     attachments=[NewAttachment("secret.txt", "text/plain", b"x")])
    db.session.commit()
    foreign = db.session.scalars(sa.select(Attachment).where(Attachment.filename == "secret.txt")).one()
    before = len(_mails())
    portal = login("anna")
    cases = [
        ({"mail-to": "carol@example.org", "mail-subject": "Hi", "mail-text": "  "}, "mail-text", "Write the message."),
        ({"mail-to": "carol@, x", "mail-subject": "Hi", "mail-text": "Text"}, "mail-to",
         "Not a valid address: &#39;carol@&#39;."),
        ({"mail-to": "carol@example.org", "mail-subject": "", "mail-text": "Text"}, "mail-subject", "Write a subject."),
    ]
    for form, field, message in cases:
        response = portal.post(f"/calls/{call.id}/mail", form)
        assert response.status_code == 422
        assert field_error(response.get_data(as_text=True), field) == message
    # A file of another call is not even offered, and not accepted.
    response = portal.post(f"/calls/{call.id}/mail", {"mail-to": "carol@example.org", "mail-subject": "Hi",
                                                       "mail-text": "x", "mail-attachments": [str(foreign.id)]})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and "secret.txt" not in page and "mine.png" in page
    assert field_error(page, "mail-attachments") == "&#39;{}&#39; is not a valid choice for this field.".format(
        foreign.id)
    assert len(_mails()) == before
    assert other.id != call.id


def test_the_forward_form_offers_the_mail_only_when_the_admin_allows_it(login, people):
    call = _call(people)
    portal = login("anna")
    page = portal.get(f"/calls/{call.id}?form=forward").get_data(as_text=True)  # the forward form open
    assert "forward-notify" not in page and 'id="forward-analyst"' in page
    # Switch off (the default): the settings decide, and they say mail the new owner.
    portal.post(f"/calls/{call.id}/forward", {"forward-analyst": str(people["bob"].id)})
    assert [m.to for m in _mails(message_type=int(MessageType.CALL_FORWARDED))] == [["bob@desk.test"]]

    settings.set_switch("forward_email_optional", True, people["admin"])
    db.session.commit()
    page = portal.get(f"/calls/{call.id}?form=forward").get_data(as_text=True)
    assert '<input checked id="forward-notify" name="forward-notify" type="checkbox" value="y">' in page
    assert "Email the new owner" in page
    # Unticked: no mail. Ticked: mail, even though the admin turned the message type off.
    response = portal.post(f"/calls/{call.id}/forward", {"forward-analyst": str(people["anna"].id)})
    assert response.status_code == 303
    settings.set_notification(MessageType.CALL_FORWARDED, people["admin"], enabled=False)
    db.session.commit()
    portal.logout()
    portal = login("bob")
    response = portal.post(f"/calls/{call.id}/forward", {"forward-analyst": str(people["anna"].id),
                                                         "forward-notify": "y"})
    assert response.status_code == 303
    assert [m.to for m in _mails(message_type=int(MessageType.CALL_FORWARDED))] == [["bob@desk.test"],
                                                                                    ["anna@desk.test"]]


def test_the_task_forward_form_offers_the_mail_the_same_way(login, people):
    request = create_request(people["anna"], "Desk move", tasks=[
        TaskSpec(TaskKind.ACTION, "Move the phone", group=people["service_desk"])])
    db.session.commit()
    task = request.tasks[0]
    before = len(_mails(message_type=int(MessageType.TASK_FORWARDED)))
    portal = login("anna")
    # The task's forward form, open (the no-JS way: it loads on demand).
    opened = f"/requests/{request.id}?form=task{task.id}-forward"
    page = portal.get(opened).get_data(as_text=True)
    assert f"task{task.id}-forward-notify" not in page and f'id="task{task.id}-forward-analyst"' in page
    settings.set_switch("forward_email_optional", True, people["admin"])
    db.session.commit()
    assert f'id="task{task.id}-forward-notify"' in portal.get(opened).get_data(as_text=True)
    response = portal.post(f"/requests/tasks/{task.id}/forward", {f"task{task.id}-forward-analyst": str(people["bob"].id)})
    assert response.status_code == 303
    assert len(_mails(message_type=int(MessageType.TASK_FORWARDED))) == before
    portal.post(f"/requests/tasks/{task.id}/forward", {f"task{task.id}-forward-analyst": str(people["bob"].id),
                                                       f"task{task.id}-forward-notify": "y"})
    assert [m.to for m in _mails(message_type=int(MessageType.TASK_FORWARDED))][before:] == [["bob@desk.test"]]


def test_people_opt_out_of_non_essential_mail(login, people, client):
    call = _call(people)
    portal = login("anna")
    page = portal.get("/me/settings").get_data(as_text=True)
    assert "Send me only essential mail" in page and 'href="/me/settings" aria-current="page"' in page
    response = portal.post("/me/settings", {"essential_only": "y"})
    assert response.status_code == 303
    assert "you get only essential mail" in portal.get("/me/settings").get_data(as_text=True)
    assert settings.is_opted_out(people["anna"])
    portal.logout()

    # Bob forwards to Anna: she asked for no such mail.
    portal = login("bob")
    portal.post(f"/calls/{call.id}/forward", {"forward-analyst": str(people["anna"].id)})
    assert _mails(message_type=int(MessageType.CALL_FORWARDED)) == []
    # Analysts cannot set it for others.
    assert portal.post(f"/admin/people/{people['anna'].id}/mail/all").status_code == 403
    portal.logout()

    portal = login("admin")
    page = portal.get("/admin/people").get_data(as_text=True)
    assert page.count("Only essential") >= 2  # Anna's state, and the button for everyone else
    assert portal.post(f"/admin/people/{people['anna'].id}/mail/all").status_code == 303
    assert portal.post(f"/admin/people/{people['carol'].id}/mail/essential").status_code == 303
    assert "carol@example.org now gets only essential mail." in portal.get("/admin/people").get_data(as_text=True)
    assert not settings.is_opted_out(people["anna"]) and settings.is_opted_out(people["carol"])
