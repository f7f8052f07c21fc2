"""The SLM sweep: each level fires once per call, in order, when sweeps run late, twice, or at
the same moment (the unique constraint decides), with its timeline entry and its mail to the
level's recipients; and it looks only at calls whose next level is due."""

import threading
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
import time_machine

from switchboard.calls.services import forward_call, log_call, update_call
from switchboard.db import db
from switchboard.history.models import EntryKind, HistoryEntry
from switchboard.outbox.catalogue import MessageType
from switchboard.outbox.models import OutboxMessage
from switchboard.slm import sweep as sweep_module
from switchboard.slm.models import SlaFiring
from switchboard.slm.sweep import run_sweep

T0 = datetime(2026, 6, 8, 9, 0, tzinfo=timezone.utc)


def logged_call(people, at=T0, **kwargs):
    with time_machine.travel(at, tick=False):
        call = log_call(people["anna"], "Printer jammed", customer=people["carol"], analyst=people["bob"],
                        group=people["service_desk"], **kwargs)
        db.session.commit()
    return call


def escalations(call):
    return db.session.scalars(sa.select(HistoryEntry).where(
        HistoryEntry.call_id == call.id, HistoryEntry.kind == EntryKind.ESCALATION).order_by(HistoryEntry.id)).all()


def sla_mail(call=None):
    query = sa.select(OutboxMessage).where(OutboxMessage.message_type.in_(
        [int(MessageType.SLA_ESCALATION), int(MessageType.SLA_BREACH)])).order_by(OutboxMessage.id)
    if call is not None:
        query = query.where(OutboxMessage.call_id == call.id)
    return db.session.scalars(query).all()


def test_a_late_sweep_fires_every_crossed_level_once_in_order(people, make_sla):
    make_sla(fix=100)  # 24x7: levels at 50, 75, 90 s, breach at 100 s
    call = logged_call(people)
    report = run_sweep(T0 + timedelta(seconds=95))
    assert (report.calls, report.escalations, report.breaches) == (1, 3, 0)
    assert [e.summary.split(":")[0] for e in escalations(call)] == [
        "SLA escalation level 1", "SLA escalation level 2", "SLA escalation level 3"]
    db.session.refresh(call)
    assert call.sla_level == 3 and not call.sla_breached
    assert call.next_due_at == T0 + timedelta(seconds=100)
    mails = sla_mail(call)
    assert [(m.context["level"], m.to) for m in mails] == [(1, ["bob@desk.test"]), (2, ["bob@desk.test"]),
                                                           (3, ["bob@desk.test"])]
    assert mails[0].in_reply_to is not None  # threaded under the call's acknowledgement

    report = run_sweep(T0 + timedelta(seconds=101))
    assert (report.escalations, report.breaches, report.mails) == (0, 1, 1)
    db.session.refresh(call)
    assert call.sla_breached and call.next_due_at is None
    assert escalations(call)[-1].summary.startswith("SLA breach: the fix target was missed")


def test_a_sweep_run_twice_fires_nothing_the_second_time(people, make_sla):
    make_sla(fix=100)
    calls = [logged_call(people) for _ in range(3)]
    first = run_sweep(T0 + timedelta(seconds=60))
    second = run_sweep(T0 + timedelta(seconds=60))
    assert (first.escalations, first.mails) == (3, 3)
    assert (second.calls, second.escalations, second.mails) == (0, 0, 0)
    assert sum(len(escalations(c)) for c in calls) == 3


def test_a_sweep_before_any_level_is_due_does_nothing(people, make_sla):
    make_sla(fix=100)
    logged_call(people)
    assert run_sweep(T0 + timedelta(seconds=49)).summary() == (
        "slm sweep: 0 call(s) due, 0 escalation(s), 0 breach(es), 0 mail(s) queued")


def test_levels_go_to_their_recipients(people, make_sla):
    make_sla(fix=100, levels=(50,), assigned_analyst=False, group_members=True,
             escalation_person_id=people["admin"].id, escalation_group_id=people["network"].id)
    call = logged_call(people)
    run_sweep(T0 + timedelta(seconds=60))
    assert sorted(m.to[0] for m in sla_mail(call)) == ["admin@desk.test", "anna@desk.test", "bob@desk.test"]


def test_a_response_stops_its_levels_and_the_fix_levels_go_on(people, make_sla):
    make_sla(response=100, fix=1000)
    call = logged_call(people)
    with time_machine.travel(T0 + timedelta(seconds=10), tick=False):
        update_call(call, people["bob"], "On my way")
        db.session.commit()
    report = run_sweep(T0 + timedelta(seconds=600))
    assert report.escalations == 1  # fix 50% only; the response levels are not due any more
    assert escalations(call)[0].details["target"] == "fix"


def test_escalation_mail_can_be_switched_off_and_the_timeline_still_says_it(people, make_sla):
    from switchboard.outbox.settings import set_switch

    make_sla(fix=100)
    set_switch("email_on_escalation", False, people["admin"])
    db.session.commit()
    call = logged_call(people)
    report = run_sweep(T0 + timedelta(seconds=60))
    assert (report.escalations, report.mails) == (1, 0)
    assert len(escalations(call)) == 1


def test_two_sweeps_at_the_same_moment_fire_each_level_once(app, people, make_sla, monkeypatch):
    """Both sweeps read the same due calls before either writes (a barrier holds them), so
    only the unique constraint on (call, target, level) can keep the firings to one each."""
    make_sla(fix=100)
    for _ in range(5):
        logged_call(people)
    db.session.remove()
    barrier = threading.Barrier(2, timeout=30)
    insert = sweep_module._insert_firings

    def insert_after_both_have_read(crossed, now):
        barrier.wait()
        return insert(crossed, now)

    monkeypatch.setattr(sweep_module, "_insert_firings", insert_after_both_have_read)
    reports, errors = [], []

    def sweep():
        with app.app_context():
            try:
                reports.append(run_sweep(T0 + timedelta(seconds=95)))
            except Exception as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sum(r.escalations for r in reports) == 15  # 5 calls x 3 levels, once each
    assert sorted(r.escalations for r in reports) in ([0, 15], [15, 0])
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SlaFiring)) == 15
    assert len(sla_mail()) == 15
    assert db.session.scalar(sa.select(sa.func.count()).select_from(HistoryEntry)
                             .where(HistoryEntry.kind == EntryKind.ESCALATION)) == 15


def test_the_sweep_finds_due_calls_by_the_next_due_index_not_by_scanning_open_calls(app, people, make_sla, backend):
    make_sla(fix=100)
    logged_call(people)
    if backend != "postgresql":
        plan = " ".join(str(r[-1]) for r in db.session.execute(sa.text(
            "EXPLAIN QUERY PLAN SELECT id FROM call WHERE next_due_at <= '2026-06-08 09:10:00' ORDER BY next_due_at")))
        assert "ix_call_next_due_at" in plan
    else:
        db.session.execute(sa.text("SET LOCAL enable_seqscan = off"))  # a tiny table: ask what it would use
        plan = " ".join(r[0] for r in db.session.execute(sa.text(
            "EXPLAIN SELECT id FROM call WHERE next_due_at <= '2026-06-08 09:10:00' ORDER BY next_due_at")))
        assert "ix_call_next_due_at" in plan


def test_slm_sweep_command_prints_one_line_and_exits_0(app, people, make_sla):
    make_sla(fix=100)
    with time_machine.travel(datetime.now(timezone.utc) - timedelta(seconds=60), tick=False):
        log_call(people["anna"], "Printer jammed", customer=people["carol"], analyst=people["bob"])
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["slm", "sweep"])
    assert result.exit_code == 0, result.output
    assert result.output == "slm sweep: 1 call(s) due, 1 escalation(s), 0 breach(es), 1 mail(s) queued\n"


def test_a_call_logged_by_mail_gets_its_sla_and_escalates(app, people, make_sla):
    from email.message import EmailMessage

    from switchboard.inbound.process import process_pending
    from switchboard.inbound.store import store_message
    from switchboard.calls.models import Call

    make_sla(fix=100)
    mail = EmailMessage()
    mail["From"] = "carol@example.org"
    mail["Subject"] = "Projector broken"
    mail.set_content("Room 4")
    with time_machine.travel(T0, tick=False):
        store_message(mail.as_bytes(), source="pipe")
        db.session.commit()
        process_pending()
        db.session.commit()
    call = db.session.scalar(sa.select(Call))
    assert call.source == "email" and call.sla.name == "Standard"
    assert call.fix_due_at == T0 + timedelta(seconds=100)
    assert run_sweep(T0 + timedelta(seconds=60)).escalations == 1
