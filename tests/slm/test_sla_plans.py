"""Each process keeps the SLAs' terms (targets, levels, business calendar) for a few seconds
(switchboard.slm.plans): an action on a call under an SLA reads none of them while the copy is
warm; a change the admin makes is in force in the same process at once and in every other
process within PLAN_SECONDS; a change rolled back never reaches the copy. Both databases."""

import re

import pytest

from switchboard.calls.models import CallStatus
from switchboard.calls.services import (
    change_priority, get_call, hold_call, log_call, reopen_call, resolve_call, resume_call, update_call,
)
from switchboard.db import db
from switchboard.people.models import Person
from switchboard.slm import admin, plans
from switchboard.slm.models import Target
from tests.statements import statements

HOUR = 3600
# A statement that reads the SLA, its targets, levels or calendar (the call's firings are the
# call's own state, read as before).
SLA_TABLES = re.compile(r"\b(FROM|JOIN)\s+sla(_target|_level|_calendar|_calendar_hours|_calendar_holiday)?\b", re.I)


@pytest.fixture
def frozen(monkeypatch):
    """The copies' clock, moved on by the test."""
    now = [1000.0]
    monkeypatch.setattr(plans, "_clock", lambda: now[0])
    return now


def _sent_during(action):
    with statements() as sent:
        action()
        db.session.commit()
    return sent


def test_an_action_on_an_sla_call_reads_no_sla_statement_when_the_copy_is_warm(people, make_sla, office, frozen):
    make_sla(calendar_id=office.id, response=HOUR, fix=4 * HOUR)
    call = log_call(people["anna"], "Printer jammed", customer=people["carol"])  # warms the copy
    db.session.commit()
    call_id, anna_id = call.id, people["anna"].id
    actions = [
        ("note", lambda c, me: update_call(c, me, "Looking at it")),
        ("hold", lambda c, me: hold_call(c, me, "Waiting for the part")),
        ("resume", lambda c, me: resume_call(c, me, "The part came")),
        ("priority", lambda c, me: change_priority(c, me, 2, "Busier")),
        ("resolve", lambda c, me: resolve_call(c, me, "Cleared the jam")),
        ("reopen", lambda c, me: reopen_call(c, me, "Jammed again")),
    ]
    for name, action in actions:
        db.session.expunge_all()  # as a request starts
        sent = _sent_during(lambda: action(get_call(call_id), db.session.get(Person, anna_id)))
        assert [s for s in sent if SLA_TABLES.search(s)] == [], name
        call = get_call(call_id)
        if name == "hold":
            assert call.status is CallStatus.PENDING and call.next_due_at is None  # the clock stopped
        if name == "resume":
            assert call.next_due_at is not None and call.fix_due_at is not None  # and runs again


def _sla_with_fix(people, office, hours, sla=None):
    return admin.save_sla(people["admin"], "Standard", calendar_id=office.id, targets={3: (None, hours * HOUR)},
                          levels={Target.FIX: []}, is_default=True, sla=sla)


def test_a_change_is_in_force_here_at_once_and_elsewhere_within_the_bound(people, office, frozen):
    from tests.conftest import make_test_app

    sla = _sla_with_fix(people, office, 4)
    db.session.commit()
    sla_id = sla.id
    assert plans.plan(sla_id).target_for(3).fix_seconds == 4 * HOUR
    other = make_test_app(db.engine.url.render_as_string(hide_password=False))  # another process

    def elsewhere():
        with other.app_context():
            try:
                return plans.plan(sla_id).target_for(3).fix_seconds
            finally:
                db.session.remove()

    try:
        assert elsewhere() == 4 * HOUR  # its copy is warm now
        _sla_with_fix(people, office, 8, sla=db.session.get(type(sla), sla_id))
        # The writing transaction reads its own change ...
        assert plans.plan(sla_id).target_for(3).fix_seconds == 8 * HOUR
        db.session.commit()
        # ... and this process has it once committed: a call logged now is due on the new target.
        assert plans.plan(sla_id).target_for(3).fix_seconds == 8 * HOUR
        # The other process answers from its copy until it is PLAN_SECONDS old, not longer.
        frozen[0] += plans.PLAN_SECONDS - 0.5
        assert elsewhere() == 4 * HOUR
        frozen[0] += 0.5
        assert elsewhere() == 8 * HOUR
    finally:
        with other.app_context():
            db.engine.dispose()


def test_a_calendar_change_reaches_the_calls_on_its_slas(people, office, frozen):
    """Closing a day on the calendar moves a running call's due time in this process at once."""
    sla = _sla_with_fix(people, office, 4)
    db.session.commit()
    before = plans.plan(sla.id).business_calendar()
    admin.save_calendar(people["admin"], "London office", "Europe/London", {d: "09:00-17:00" for d in range(4)},
                        [], calendar=office)
    db.session.commit()
    after = plans.plan(sla.id).business_calendar()
    assert before.week[4] == ((540, 1020),) and after.week[4] == ()


def test_a_change_rolled_back_never_reaches_the_copy(people, office, frozen):
    sla = _sla_with_fix(people, office, 4)
    db.session.commit()
    sla_id = sla.id
    assert plans.plan(sla_id).target_for(3).fix_seconds == 4 * HOUR
    _sla_with_fix(people, office, 8, sla=sla)
    assert plans.plan(sla_id).target_for(3).fix_seconds == 8 * HOUR
    db.session.rollback()
    assert plans.plan(sla_id).target_for(3).fix_seconds == 4 * HOUR
