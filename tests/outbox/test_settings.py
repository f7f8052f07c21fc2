"""What admins set for outgoing mail: switches, per-type rules, their own templates (checked
before saving, used when sending), per-account From lines, and failed mail to requeue or
cancel."""

import pytest

from switchboard.calls.services import log_call
from switchboard.db import db
from switchboard.errors import InvalidInput, InvalidTransition, NotFound, PermissionDenied
from switchboard.inbound.models import IncomingAccount, Protocol
from switchboard.inbound.process import process_pending
from switchboard.inbound.store import store_message
from switchboard.outbox import catalogue, settings
from switchboard.outbox.catalogue import MessageType as T
from switchboard.outbox.catalogue import Recipient, TemplateSet
from switchboard.outbox.models import OutboxStatus
from switchboard.outbox.queue import queue_mail

from .desk import DESK, FAILED, SENT, desk_server, make_due, row, rows, send  # noqa: F401


# -- switches and rules ---------------------------------------------------------------------------

def test_switches_have_defaults_and_only_admins_change_them(people):
    assert settings.switches() == {"forward_email_optional": False, "email_on_update_via_email": True,
                                   "email_on_escalation": True, "email_customer_on_desk_note": True}
    settings.set_switch("forward_email_optional", True, people["admin"])
    assert settings.get_switch("forward_email_optional") is True
    with pytest.raises(PermissionDenied):
        settings.set_switch("email_on_escalation", False, people["anna"])
    with pytest.raises(InvalidInput):
        settings.set_switch("no_such_switch", True, people["admin"])
    with pytest.raises(InvalidInput):
        settings.set_switch("email_on_escalation", "yes", people["admin"])


def test_escalation_switch_turns_off_both_sla_types(people):
    assert settings.mail_wanted(T.SLA_BREACH)
    settings.set_switch("email_on_escalation", False, people["admin"])
    assert not settings.mail_wanted(T.SLA_ESCALATION) and not settings.mail_wanted(T.SLA_BREACH)
    assert settings.mail_wanted(T.CALL_LOGGED)


def test_rules_default_to_the_catalogue_and_refuse_nonsense(people):
    rules = settings.notification_rules()
    assert len(rules) == len(T) and all(r.enabled and not r.customised for r in rules)
    rule = settings.set_notification(T.CALL_RESOLVED, people["admin"], enabled=False,
                                     recipients=["customer", Recipient.ASSIGNED_ANALYST])
    assert (rule.enabled, rule.recipients) == (False, (Recipient.CUSTOMER, Recipient.ASSIGNED_ANALYST))
    with pytest.raises(InvalidInput, match="Unknown recipient"):
        settings.set_notification(T.CALL_RESOLVED, people["admin"], recipients=["the boss"])
    with pytest.raises(InvalidInput, match="at least one"):
        settings.set_notification(T.CALL_RESOLVED, people["admin"], recipients=[])
    with pytest.raises(InvalidInput, match="no message type"):
        settings.set_notification(99, people["admin"], enabled=False)
    assert settings.reset_notification(T.CALL_RESOLVED, people["admin"]).customised is False


# -- templates --------------------------------------------------------------------------------

@pytest.mark.parametrize("subject", [
    "{{ call.__class__.__mro__ }}",
    "{{ ''.__class__.__subclasses__() }}",
    "{{ call['__class__'] }}",
    "{% if false %}{{ cycler.__init__.__globals__ }}{% endif %}",  # a branch samples never reach
    "{{ call._label }}",
])
def test_sandbox_escapes_are_refused_when_saving(people, subject):
    with pytest.raises(InvalidInput, match="not allowed"):
        settings.save_template_override(T.CALL_LOGGED, people["admin"], subject=subject, text="Hello")
    assert settings.list_template_overrides() == []


@pytest.mark.parametrize("text, problem", [
    ("{{ call.ref }", "line 1"),
    ("Hello {{ caller_name }}", "unknown variable 'caller_name'"),
    ("{{ 1 / 0 }}", "on sample data"),
    ("{% for i in range(10**9) %}x{% endfor %}", "on sample data"),
    ("{{ call.nonexistent }}", "on sample data"),
])
def test_broken_templates_are_refused_with_the_reason(people, text, problem):
    with pytest.raises(InvalidInput, match=problem.replace("(", r"\(")):
        settings.save_template_override(T.CALL_LOGGED, people["admin"], subject="{{ call.ref }}", text=text)


def test_templates_come_as_a_set_and_only_from_admins(people):
    with pytest.raises(InvalidInput, match="both a subject and a text"):
        settings.save_template_override(T.CALL_LOGGED, people["admin"], subject="{{ call.ref }}")
    with pytest.raises(PermissionDenied):
        settings.save_template_override(T.CALL_LOGGED, people["anna"], subject="x", text="y")
    with pytest.raises(InvalidInput, match="From address"):
        settings.save_template_override(None, people["admin"], from_address="not an address")


def test_an_admins_template_is_what_the_customer_receives(desk_server, people):
    settings.save_template_override(
        T.CALL_LOGGED, people["admin"], subject="Ticket {{ call.ref }} opened",
        text="Dear {{ recipient.display_name }}, we are on it ({{ call.priority.name }}).")
    assert settings.preview(T.CALL_LOGGED).subject == "Ticket CALL-42 opened"
    db.session.commit()
    call = log_call(people["carol"], "Printer jams")
    db.session.commit()
    send()
    [received] = desk_server.messages
    mail = rows()[0]
    assert received.message["Subject"] == f"Ticket {call.ref} opened [SB-{mail.reply_token}]"
    body = received.message.get_body(("plain",)).get_content()
    assert body.startswith("Dear Carol Customer, we are on it (P3 Medium).")
    settings.delete_template_override(T.CALL_LOGGED, people["admin"])
    assert settings.preview(T.CALL_LOGGED).subject.startswith("CALL-42 logged:")


def test_an_html_template_renders_with_escaping(desk_server, people):
    settings.save_template_override(
        T.CALL_LOGGED, people["admin"], subject="{{ call.ref }}", text="{{ call.summary }}",
        html="<p>{{ call.summary }}</p>")
    db.session.commit()
    log_call(people["carol"], "<script>alert(1)</script> printer")
    db.session.commit()
    send()
    html = desk_server.messages[0].message.get_body(("html",)).get_content()
    assert "<p>&lt;script&gt;alert(1)&lt;/script&gt; printer</p>" in html


def _account(name="support", **settings_):
    account = IncomingAccount(name=name, protocol=Protocol.LMTP, active=True, **settings_)
    db.session.add(account)
    db.session.flush()
    return account


def _mail_from_carol(subject="Printer jams") -> bytes:
    return (f"From: Carol Customer <carol@example.org>\r\nTo: support@desk.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.org>\r\nDate: Fri, 27 Nov 2026 09:00:00 +0000\r\n"
            "\r\nIt jams on every page.\r\n").encode()


def test_per_account_from_line_and_signature(desk_server, people):
    support, sales = _account("support"), _account("sales")
    admin = people["admin"]
    settings.save_template_override(None, admin, account_id=support.id, from_address="Support@Acme.example",
                                    from_name="Acme Support", signature="Acme Support\n+1 555 0100")
    settings.save_template_override(None, admin, signature="The Desk")  # everyone else
    db.session.commit()
    store_message(_mail_from_carol("Printer jams"), source="pipe", account=support)
    store_message(_mail_from_carol("Screen flickers"), source="pipe", account=sales)
    db.session.commit()
    process_pending()
    send()
    mails = {m.message["Subject"].split(" logged")[0]: m for m in desk_server.messages}
    first, second = (mails[c] for c in sorted(mails))
    assert first.message["From"] == "Acme Support <support@acme.example>"
    assert first.mail_from == DESK  # the envelope stays the server's
    assert "-- \nAcme Support\n+1 555 0100" in first.message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert second.message["From"] == f"Acme Service Desk <{DESK}>"
    assert "-- \nThe Desk" in second.message.get_body(("plain",)).get_content().replace("\r\n", "\n")


# -- failed mail ------------------------------------------------------------------------------

def _mail(to=("carol@example.org",)):
    mail = queue_mail(catalogue.MANUAL_MESSAGE, list(to), subject="Hello", text="Hi.", automatic=False)
    db.session.commit()
    return mail


def test_admin_requeues_a_failed_mail_with_the_same_message_id(desk_server, people):
    mail = _mail()
    desk_server.faults.rcpt_replies = {"carol@example.org": "550 5.1.1 No such user"}
    send()
    assert row(mail.id).status is FAILED
    with pytest.raises(PermissionDenied):
        settings.requeue(mail.id, people["anna"])
    desk_server.faults.rcpt_replies = {}
    requeued = settings.requeue(mail.id, people["admin"])
    assert (requeued.status, requeued.attempts) == (OutboxStatus.QUEUED, 0)
    assert requeued.last_message == "Queued again by Ada Admin."
    db.session.commit()
    assert send().sent == 1
    assert desk_server.messages[0].message["Message-ID"] == mail.message_id


def test_requeue_sends_only_to_those_who_did_not_get_it(desk_server, people, app, monkeypatch):
    monkeypatch.setitem(app.config, "OUTBOX_MAX_ATTEMPTS", 1)
    mail = _mail(to=["carol@example.org", "dave@example.org"])
    desk_server.faults.rcpt_replies = {"dave@example.org": "452 4.2.2 Mailbox full"}
    send()
    assert row(mail.id).status is FAILED  # dave ran out of attempts; carol has it
    desk_server.faults.rcpt_replies = {}
    settings.requeue(mail.id, people["admin"])
    db.session.commit()
    send()
    assert [m.rcpt_tos for m in desk_server.messages] == [["carol@example.org"], ["dave@example.org"]]
    assert row(mail.id).status is SENT


def test_cancelled_mail_is_never_sent(desk_server, people):
    mail = _mail()
    cancelled = settings.cancel(mail.id, people["admin"])
    assert cancelled.status is OutboxStatus.CANCELLED
    db.session.commit()
    make_due(mail.id)
    assert send().claimed == 0 and desk_server.messages == []
    with pytest.raises(InvalidTransition):
        settings.cancel(mail.id, people["admin"])
    settings.requeue(mail.id, people["admin"])  # changed their mind
    db.session.commit()
    assert send().sent == 1
    with pytest.raises(InvalidTransition, match="is sent"):
        settings.cancel(mail.id, people["admin"])
    with pytest.raises(InvalidTransition):
        settings.requeue(mail.id, people["admin"])
    with pytest.raises(NotFound):
        settings.cancel(999999, people["admin"])


def test_check_template_set_accepts_every_default(app):
    for info in catalogue.CATALOGUE.values():
        settings.check_template_set(info.type, info.default_templates)


def test_preview_with_draft_templates(app):
    rendered = settings.preview(T.APPROVAL_REQUESTED, TemplateSet("{{ task.ref }} needs you", "{{ approve_mailto }}"))
    assert rendered.subject == "TASK-7 needs you"
    assert rendered.text.startswith("mailto:servicedesk@example.org?subject=Approve%20task%207")


# -- the process's copy of the settings -------------------------------------------------------------
# Each process keeps the switches, rules and opt-outs for settings.CONFIG_SECONDS. A second app on
# the same database has its own copy, as another process (a portal worker, the receiver, the
# scheduler) does: it must see a change within CONFIG_SECONDS, and the process that made it at once.

@pytest.fixture
def other_process(app):
    from tests.conftest import make_test_app

    other = make_test_app(db.engine.url.render_as_string(hide_password=False))
    yield other
    with other.app_context():
        db.engine.dispose()


def _in(other, read):
    with other.app_context():
        try:
            return read()
        finally:
            db.session.remove()


def test_a_change_is_in_force_here_at_once_and_elsewhere_within_the_bound(people, other_process,
                                                                          monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(settings, "_clock", lambda: now[0])
    carol = people["carol"]
    assert settings.mail_wanted(T.CALL_RESOLVED) and settings.get_switch("email_on_escalation")
    assert _in(other_process, lambda: (settings.mail_wanted(T.CALL_RESOLVED),
                                       settings.get_switch("email_on_escalation"),
                                       settings.opted_out_ids([carol.id]))) == (True, True, set())

    settings.set_notification(T.CALL_RESOLVED, people["admin"], enabled=False)
    settings.set_switch("email_on_escalation", False, people["admin"])
    settings.set_mail_opt_out(carol, True, carol)
    # The writing transaction reads its own change ...
    assert not settings.mail_wanted(T.CALL_RESOLVED) and settings.opted_out_ids([carol.id]) == {carol.id}
    db.session.commit()
    # ... and this process has it as soon as it is committed.
    assert not settings.mail_wanted(T.CALL_RESOLVED)
    assert not settings.get_switch("email_on_escalation")
    assert settings.opted_out_ids([carol.id]) == {carol.id}

    # The other process answers from its copy until it is CONFIG_SECONDS old, not longer.
    now[0] += settings.CONFIG_SECONDS - 0.5
    assert _in(other_process, lambda: settings.mail_wanted(T.CALL_RESOLVED)) is True
    now[0] += 0.5
    assert _in(other_process, lambda: (settings.mail_wanted(T.CALL_RESOLVED),
                                       settings.get_switch("email_on_escalation"),
                                       settings.opted_out_ids([carol.id]))) == (False, False, {carol.id})


def test_a_change_rolled_back_never_reaches_the_copy(people, monkeypatch):
    monkeypatch.setattr(settings, "_clock", lambda: 1000.0)  # no copy expires in this test
    assert settings.mail_wanted(T.CALL_CLOSED)
    settings.set_notification(T.CALL_CLOSED, people["admin"], enabled=False)
    settings.set_mail_opt_out(people["carol"], True, people["carol"])
    assert not settings.mail_wanted(T.CALL_CLOSED)
    db.session.rollback()
    assert settings.mail_wanted(T.CALL_CLOSED)
    assert settings.opted_out_ids([people["carol"].id]) == set()


def test_an_action_reads_the_settings_from_the_copy(people, monkeypatch):
    """Acting on calls asks the settings no statement while the copy is fresh."""
    from switchboard.calls.services import resolve_call
    from tests.statements import statements

    monkeypatch.setattr(settings, "_clock", lambda: 1000.0)
    settings.mail_wanted(T.CALL_RESOLVED)  # loads the copy
    db.session.commit()
    call = log_call(people["anna"], "Printer jammed", customer=people["carol"])
    db.session.commit()
    with statements() as sent:
        resolve_call(call, people["anna"], "Cleared the jam")
        db.session.commit()
    assert [r.to for r in rows(message_type=int(T.CALL_RESOLVED))] == [[people["carol"].email]]
    assert not [s for s in sent if "notification_setting" in s or "mail_switch" in s or "mail_opt_out" in s]
