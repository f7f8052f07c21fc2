"""What an action on a call under an SLA costs the database: reading the SLA (its targets,
levels, business calendar, the call's firings) flushes nothing, so each action writes the call
in one UPDATE with its timeline entry, however many of those reads it makes."""


from switchboard.calls.services import (
    change_priority, close_call, get_call, hold_call, log_call, reopen_call, resolve_call, resume_call, update_call,
)
from switchboard.db import db
from switchboard.people.models import Person
from tests.statements import statements

HOUR = 3600


def test_each_action_writes_the_call_once(people, make_sla, office):
    make_sla(calendar_id=office.id, response=HOUR, fix=4 * HOUR)
    call = log_call(people["anna"], "Printer jammed", customer=people["carol"])
    db.session.commit()
    call_id, anna_id = call.id, people["anna"].id
    actions = [
        ("note", lambda c, me: update_call(c, me, "Looking at it")),
        ("hold", lambda c, me: hold_call(c, me, "Waiting for the part")),
        ("resume", lambda c, me: resume_call(c, me, "The part came")),
        ("priority", lambda c, me: change_priority(c, me, 2, "Busier")),
        ("resolve", lambda c, me: resolve_call(c, me, "Cleared the jam")),
        ("reopen", lambda c, me: reopen_call(c, me, "Jammed again")),
        ("close", lambda c, me: close_call(c, me, "Replaced")),
    ]
    for name, action in actions:
        db.session.expunge_all()  # as a request starts: nothing of the SLA read yet
        with statements() as sent:
            action(get_call(call_id), db.session.get(Person, anna_id))
            db.session.commit()
        updates = [s for s in sent if s.lstrip().upper().startswith("UPDATE CALL ")]
        assert len(updates) == 1, (name, updates)
    call = get_call(call_id)
    assert call.status.value == "closed" and call.sla.name == "Standard" and call.next_due_at is None


def test_the_priority_chosen_from_the_form_is_read_once(people, make_sla, office):
    """The priority form lists the priorities; the action takes the chosen one from that list
    (it read it again by id)."""
    from switchboard.calls.admin import priorities

    make_sla(calendar_id=office.id, response=HOUR, fix=4 * HOUR)
    call = log_call(people["anna"], "Printer jammed", customer=people["carol"])
    db.session.commit()
    call_id, anna_id = call.id, people["anna"].id
    db.session.expunge_all()
    with statements() as sent:
        choices = [(p.id, p.name) for p in priorities()]  # the form's choices
        change_priority(get_call(call_id), db.session.get(Person, anna_id), choices[1][0], "Busier")
        db.session.commit()
    assert len([s for s in sent if "FROM priority" in s]) == 1
    assert get_call(call_id).priority_id == choices[1][0]
