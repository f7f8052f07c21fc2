"""Notifications: each event queues the right message type to the right people, never to the
one who acted, never to inactive people, and only essential mail to those who opted out."""

import pytest

from switchboard.calls.services import (
    close_call, forward_call, log_call, reopen_call, resolve_call, update_call,
)
from switchboard.db import db
from switchboard.outbox import settings
from switchboard.outbox.catalogue import MessageType as T
from switchboard.outbox.catalogue import Recipient
from switchboard.requests.models import TaskKind
from switchboard.requests.services import (
    TaskSpec, approve_task, create_request, forward_task, reject_task,
)

from .desk import rows


def queued():
    """(type, recipient) of every queued mail, oldest first."""
    return [(T(r.message_type), r.to[0]) for r in rows()]


@pytest.fixture
def call(people):
    """A call Carol logged herself, forwarded by Anna to Bob; the queue emptied."""
    call = log_call(people["carol"], "Printer jams", "Every page.")
    forward_call(call, people["anna"], analyst=people["bob"], group=people["service_desk"])
    db.session.commit()
    _clear()
    return call


def _clear():
    from switchboard.outbox.models import OutboxMessage

    db.session.execute(db.delete(OutboxMessage))
    db.session.commit()


def test_call_logged_acknowledges_the_customer_even_when_they_logged_it(people):
    call = log_call(people["carol"], "Printer jams")
    [mail] = rows()
    assert (T(mail.message_type), mail.to) == (T.CALL_LOGGED, ["carol@example.org"])
    assert mail.recipient_person_id == people["carol"].id and mail.call_id == call.id
    assert mail.template_key == "call_logged" and mail.reply_token
    assert mail.context["call"]["ref"] == call.ref


def test_call_logged_by_an_analyst_for_a_customer(people):
    log_call(people["anna"], "Printer jams", customer=people["carol"], group=people["service_desk"])
    assert queued() == [(T.CALL_LOGGED, "carol@example.org")]


def test_update_by_email_tells_the_assigned_analyst_not_the_author(people, call):
    update_call(call, people["carol"], "Still jams", via="email")
    assert queued() == [(T.CALL_UPDATED_BY_EMAIL, "bob@desk.test")]
    [mail] = rows()
    assert mail.context["update"]["text"] == "Still jams"
    assert mail.context["update"]["author"]["display_name"] == "Carol Customer"


def test_update_by_email_goes_to_the_group_when_nobody_owns_the_call(people):
    call = log_call(people["anna"], "Printer", customer=people["carol"], group=people["service_desk"])
    _clear()
    update_call(call, people["carol"], "More detail", via="email")
    assert sorted(queued()) == [(T.CALL_UPDATED_BY_EMAIL, "anna@desk.test"),
                                (T.CALL_UPDATED_BY_EMAIL, "bob@desk.test")]


def test_updates_in_the_portal_and_by_the_owner_send_nothing(people, call):
    update_call(call, people["carol"], "From the portal")
    update_call(call, people["bob"], "My own mail", via="email")
    assert queued() == []


def test_the_update_by_email_switch_turns_it_off(people, call):
    settings.set_switch("email_on_update_via_email", False, people["admin"])
    update_call(call, people["carol"], "Still jams", via="email")
    assert queued() == []


def test_forward_tells_the_new_analyst_not_the_one_who_forwarded(people, call):
    forward_call(call, people["bob"], analyst=people["anna"], note="Yours now")
    assert queued() == [(T.CALL_FORWARDED, "anna@desk.test")]
    [mail] = rows()
    assert mail.context["note"] == "Yours now"
    assert mail.context["forwarded_by"]["display_name"] == "Bob Analyst"


def test_forward_to_a_group_tells_its_active_members_but_the_actor(people, call):
    forward_call(call, people["admin"], group=people["service_desk"])
    assert sorted(queued()) == [(T.CALL_FORWARDED, "anna@desk.test"), (T.CALL_FORWARDED, "bob@desk.test")]
    _clear()
    people["bob"].active = False
    forward_call(call, people["anna"], group=people["service_desk"])
    assert queued() == []  # Anna acted, Bob is inactive


def test_forward_form_choice_wins_over_the_setting(people, call):
    forward_call(call, people["anna"], analyst=people["bob"], notify=False)
    assert queued() == []
    settings.set_notification(T.CALL_FORWARDED, people["admin"], enabled=False)
    forward_call(call, people["anna"], analyst=people["bob"])  # None: the setting (off)
    assert queued() == []
    forward_call(call, people["anna"], analyst=people["bob"], notify=True)  # asked for
    assert queued() == [(T.CALL_FORWARDED, "bob@desk.test")]


def test_recipients_follow_the_setting(people, call):
    settings.set_notification(T.CALL_FORWARDED, people["admin"], recipients=[Recipient.GROUP_MEMBERS])
    forward_call(call, people["admin"], analyst=people["bob"], group=people["service_desk"])
    assert sorted(queued()) == [(T.CALL_FORWARDED, "anna@desk.test"), (T.CALL_FORWARDED, "bob@desk.test")]


def test_resolve_close_and_reopen(people, call):
    resolve_call(call, people["bob"], "Replaced the fuser")
    assert queued() == [(T.CALL_RESOLVED, "carol@example.org")]
    assert rows()[0].context["resolution"] == "Replaced the fuser"
    _clear()
    reopen_call(call, people["carol"], "Jams again")
    assert queued() == [(T.CALL_REOPENED, "bob@desk.test")]
    assert rows()[0].context["reason"] == "Jams again"
    _clear()
    close_call(call, people["carol"])  # she closed it: nobody to tell
    assert queued() == []
    reopen_call(call, people["carol"])
    _clear()
    close_call(call, people["bob"])
    assert queued() == [(T.CALL_CLOSED, "carol@example.org")]


def test_a_type_turned_off_is_not_queued(people):
    settings.set_notification(T.CALL_LOGGED, people["admin"], enabled=False)
    log_call(people["carol"], "Printer jams")
    assert queued() == []


def test_opt_out_stops_notifications_but_not_approval_requests(people):
    carol, dave = people["carol"], people["dave"]
    settings.set_mail_opt_out(carol, True, carol)
    settings.set_mail_opt_out(dave, True, people["admin"])
    log_call(carol, "Printer jams")
    assert queued() == []
    create_request(people["anna"], "Laptop", requester=carol,
                   tasks=[TaskSpec(TaskKind.APPROVAL, "Approve the laptop", approver=dave)])
    assert queued() == [(T.APPROVAL_REQUESTED, "dave@example.org")]
    settings.set_mail_opt_out(carol, False, carol)
    log_call(carol, "Screen flickers")
    assert queued()[-1] == (T.CALL_LOGGED, "carol@example.org")


def test_only_the_person_or_an_admin_changes_an_opt_out(people):
    from switchboard.errors import PermissionDenied

    with pytest.raises(PermissionDenied):
        settings.set_mail_opt_out(people["carol"], True, people["dave"])


def test_approval_request_is_bound_to_the_approver_and_the_task(people):
    request = create_request(people["anna"], "New laptop", requester=people["carol"], tasks=[
        TaskSpec(TaskKind.APPROVAL, "Approve the purchase", approver=people["dave"]),
        TaskSpec(TaskKind.ACTION, "Order it", stage=2, analyst=people["bob"]),
    ])
    approval = next(t for t in request.tasks if t.kind is TaskKind.APPROVAL)
    [mail] = rows()
    assert T(mail.message_type) is T.APPROVAL_REQUESTED and mail.to == ["dave@example.org"]
    assert mail.recipient_person_id == people["dave"].id
    assert mail.task_id == approval.id and mail.call_id is None
    assert mail.reply_token
    assert mail.context["request"]["ref"] == request.ref


def test_decisions_go_to_the_requests_owner_and_requester_not_the_approver(people):
    request = create_request(people["anna"], "New laptop", requester=people["carol"], tasks=[
        TaskSpec(TaskKind.APPROVAL, "Approve the purchase", approver=people["dave"])])
    _clear()
    approve_task(request.tasks[0], people["dave"], "Within budget")
    assert sorted(queued()) == [(T.APPROVAL_DECIDED, "anna@desk.test"),
                                (T.APPROVAL_DECIDED, "carol@example.org")]
    assert {r.context["decision"] for r in rows()} == {"approved"}
    assert rows()[0].context["reason"] == "Within budget"

    second = create_request(people["anna"], "Another", requester=people["carol"], tasks=[
        TaskSpec(TaskKind.APPROVAL, "Approve it", approver=people["dave"])])
    _clear()
    reject_task(second.tasks[0], people["dave"], "No budget")
    assert {r.context["decision"] for r in rows()} == {"rejected"}


def test_task_forwarded(people):
    request = create_request(people["anna"], "Laptop", tasks=[TaskSpec(TaskKind.ACTION, "Order it")])
    _clear()
    forward_task(request.tasks[0], people["anna"], analyst=people["bob"], note="Usual supplier")
    assert queued() == [(T.TASK_FORWARDED, "bob@desk.test")]
    assert rows()[0].context["task"]["ref"] == request.tasks[0].ref
    _clear()
    forward_task(request.tasks[0], people["anna"], analyst=people["bob"], notify=False)
    assert queued() == []
