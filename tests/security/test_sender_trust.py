"""Forged From lines, replayed through the real LMTP receiver on both databases: what mail
may make the desk do for whom (switchboard.inbound.trust, README "Who mail can act for").
Each cell of the README's table is one case of test_trust_table; the attacks of issue 9
follow, each with the same command from the right person (with proof) succeeding."""

import re
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
import sqlalchemy as sa

from switchboard import config as desk_config
from switchboard.calls.models import Call, CallStatus
from switchboard.calls.services import close_call, log_call, resolve_call
from switchboard.db import db
from switchboard.history.models import HistoryEntry
from switchboard.inbound.accounts import create_account
from switchboard.inbound.models import InboundMessage, InboundStatus
from switchboard.outbox import catalogue
from switchboard.outbox.models import OutboxMessage
from switchboard.outbox.queue import queue_mail
from switchboard.people.services import create_person
from switchboard.requests.models import TaskKind, TaskStatus
from switchboard.requests.services import TaskSpec, create_request
from tests.receiver.conftest import wait_for

HELP = "help@desk.test"  # an ordinary account: the From line proves nothing
SUBMIT = "submit@desk.test"  # a trusted-submission account


def mail(subject, sender, body="Some words.", *, auth_results=()):
    msg = EmailMessage()
    # Authentication-Results first: the topmost header is the one our MTA would add.
    for value in auth_results:
        msg["Authentication-Results"] = value
    msg["From"] = sender
    msg["To"] = HELP
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content(body)
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.fixture
def desk(app, people, receiver):
    """The cast, two LMTP accounts, a running receiver, and records to attack: carol's open
    call, carol's closed call, a request raised by anna for carol with an approval task
    for dave. `desk.send(raw, to)` delivers over LMTP and returns the message once acted on."""
    create_account("help", "lmtp", addresses=[HELP])
    create_account("submit", "lmtp", addresses=[SUBMIT], trusted_submission=True)
    open_call = log_call(people["carol"], "Printer jammed")
    closed_call = log_call(people["carol"], "Old laptop")
    close_call(closed_call, people["anna"], "done")
    request = create_request(people["anna"], "New laptop", requester=people["carol"], tasks=[
        TaskSpec(TaskKind.APPROVAL, "Manager approval", approver=people["dave"])])
    db.session.commit()
    lmtp = receiver()

    class Desk:
        call, closed, request_ = open_call, closed_call, request
        task = request.tasks[0]
        ids = {"call": open_call.id, "closed": closed_call.id, "task": request.tasks[0].id,
               "request": request.id}

        @staticmethod
        def token(record, person) -> str:
            """The token of a mail the desk sent `person` about `record`."""
            row = queue_mail(catalogue.MANUAL_MESSAGE, [person.email], record=record, recipient_person=person,
                             subject="about it", text="...")
            db.session.commit()
            return row.reply_token

        @staticmethod
        def send(raw: bytes, to: str = HELP) -> InboundMessage:
            before = db.session.scalar(sa.select(sa.func.max(InboundMessage.id))) or 0
            with lmtp.smtp() as client:
                assert client.sendmail("sender@example.org", [to], raw) == {}
            row = wait_for(lambda: db.session.scalar(
                sa.select(InboundMessage).where(InboundMessage.id > before,
                                                InboundMessage.status != InboundStatus.NEW)))
            assert row is not None, "the receiver did not act on the mail"
            return row

    return Desk


def fresh(model, ident):
    db.session.rollback()
    return db.session.get(model, ident)


def notes(owner_column, ident) -> list[HistoryEntry]:
    db.session.rollback()
    return list(db.session.scalars(sa.select(HistoryEntry).where(owner_column == ident,
                                                                 HistoryEntry.body == "Some words.")))


def outcome_reason(row: InboundMessage) -> str:
    """The reason in the inbound log, without what became of the reply (which a limit may hold back)."""
    return re.sub(r" \((?:rejection reply queued|no reply[^()]*)\)$", "", row.outcome)


def rejection_reason(row: InboundMessage) -> str:
    reply = db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.inbound_id == row.id,
                                                             OutboxMessage.message_type == catalogue.EMAIL_REJECTED))
    return reply.context["reason"] if reply is not None else ""


# --- the README table, one case per cell ---------------------------------------------------------
# Rows: what the mail asks. Columns: a verified sender with the rights (a token reply from the
# right person, or the trusted-submission account where no record is replied to), the same person
# without proof (an ordinary account, no token: anyone could have written that From line), and an
# address the desk does not know.

ROWS = {
    # row: (subject template, record key, who has the rights, record the token is about)
    "new call": ("Log call: plotter on fire", None, "carol", None),
    "note on own open call": ("Update call {call}", "call", "carol", "call"),
    "note on another's call (staff)": ("Update call {call}", "call", "anna", "call"),
    "close call": ("Close call {call}", "call", "carol", "call"),
    "reopen call": ("Reopen call {closed}", "closed", "carol", "closed"),
    "update task": ("Update task {task}", "task", "anna", "task"),
    "update request": ("Update request {request}", "request", "anna", "request"),
    "approve task": ("Approve task {task}", "task", "dave", "task"),
    "summary": ("Summary calls", None, "carol", None),
}

# What each cell must show: "done", "done, marked" (a note flagged "sender not verified"),
# or "refused" (nothing changed, a rejection saying why).
TABLE = {
    "new call": ("done", "done", "done"),
    "note on own open call": ("done", "done, marked", "refused"),
    "note on another's call (staff)": ("done", "refused", "refused"),
    "close call": ("done", "refused", "refused"),
    "reopen call": ("done", "refused", "refused"),
    "update task": ("done", "refused", "refused"),
    "update request": ("done", "refused", "refused"),
    "approve task": ("done", "refused", "refused"),
    "summary": ("done", "done", "refused"),
}
COLUMNS = ("verified", "unverified", "unknown")


def _state(desk, row):
    """What the row's action would change, read fresh from the database."""
    db.session.rollback()
    if row == "new call":
        return db.session.scalars(sa.select(Call.customer_id).where(Call.summary == "plotter on fire")).all()
    if row == "summary":
        return db.session.scalars(sa.select(OutboxMessage.to)
                                  .where(OutboxMessage.message_type == catalogue.SUMMARY_REPLY)).all()
    if row in ("close call", "reopen call"):
        return fresh(Call, desk.ids["call" if row == "close call" else "closed"]).status
    if row == "approve task":
        return fresh(type(desk.task), desk.ids["task"]).status
    column = {"call": HistoryEntry.call_id, "task": HistoryEntry.task_id,
              "request": HistoryEntry.request_id}[ROWS[row][1]]
    return [(e.author.email, e.sender_unverified, e.summary) for e in notes(column, desk.ids[ROWS[row][1]])]


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("row", list(ROWS))
def test_trust_table(desk, people, row, column):
    subject_template, record_key, who, token_about = ROWS[row]
    subject = subject_template.format(**desk.ids)
    to = HELP
    if column == "unknown":
        sender = "stranger@example.net"
    else:
        sender = people[who].email
    if column == "verified":
        if token_about is not None:
            record = {"call": desk.call, "closed": desk.closed, "task": desk.task,
                      "request": desk.request_}[token_about]
            subject = f"Re: {subject} [SB-{desk.token(record, people[who])}]"
        else:
            to = SUBMIT
    before = _state(desk, row)
    row_in = desk.send(mail(subject, sender), to=to)
    after = _state(desk, row)
    expected = TABLE[row][COLUMNS.index(column)]

    if expected == "refused":
        assert row_in.status is InboundStatus.REJECTED, row_in.outcome
        assert after == before, "a refused mail changed something"
        assert rejection_reason(row_in), "the sender is told why"
        return
    assert row_in.status is InboundStatus.PROCESSED, row_in.outcome
    assert after != before
    if row == "new call":
        # Logged for the From address, whoever that is.
        assert [p.email for p in map(lambda i: fresh(type(people["carol"]), i), after)] == [sender]
    elif row == "summary":
        assert after == [[sender]]
    elif row in ("close call", "reopen call", "approve task"):
        assert after == {"close call": CallStatus.CLOSED, "reopen call": CallStatus.OPEN,
                         "approve task": TaskStatus.APPROVED}[row]
    else:
        (author, unverified, summary), = after
        assert author == sender
        assert unverified is (expected == "done, marked")
        assert ("sender not verified" in summary) is unverified
        assert ("sender not verified" in row_in.outcome) is unverified


# --- the attacks of issue 9 ------------------------------------------------------------------

FORGED_ANALYST = [
    ("Close call {call}", lambda d: fresh(Call, d.ids["call"]).status, "call"),
    ("Reopen call {closed}", lambda d: fresh(Call, d.ids["closed"]).status, "closed"),
    ("Update call {call}", lambda d: len(notes(HistoryEntry.call_id, d.ids["call"])), "call"),
    ("Update request {request}", lambda d: len(notes(HistoryEntry.request_id, d.ids["request"])), "request"),
    ("Update task {task}", lambda d: len(notes(HistoryEntry.task_id, d.ids["task"])), "task"),
]


@pytest.mark.parametrize("subject,state,about", FORGED_ANALYST, ids=[s.split(" {")[0] for s, _, _ in FORGED_ANALYST])
def test_forged_analyst_from_is_refused_and_the_analysts_token_reply_succeeds(desk, people, subject, state, about):
    subject = subject.format(**desk.ids)
    before = state(desk)
    forged = desk.send(mail(subject, "Anna Analyst <anna@desk.test>"))
    assert forged.status is InboundStatus.REJECTED
    assert state(desk) == before
    # The reply names the proof that would work; it goes to anna's real mailbox, not the forger.
    reason = rejection_reason(forged)
    assert "reply to the mail the desk sent you" in reason.lower() and "token" in reason
    record = {"call": desk.call, "closed": desk.closed, "task": desk.task, "request": desk.request_}[about]
    genuine = desk.send(mail(f"Re: {subject} [SB-{desk.token(record, people['anna'])}]", "anna@desk.test"))
    assert genuine.status is InboundStatus.PROCESSED, genuine.outcome
    assert state(desk) != before and "sender verified by reply token" in genuine.outcome


def test_someone_elses_token_proves_nothing(desk, people):
    """A desk mail forwarded on (or a token seen in a quote) does not make its reader its recipient."""
    carols = desk.token(desk.call, people["carol"])
    row = desk.send(mail(f"Re: Close call {desk.ids['call']} [SB-{carols}]", "anna@desk.test"))
    assert row.status is InboundStatus.REJECTED and fresh(Call, desk.ids["call"]).status is CallStatus.OPEN


def test_a_token_of_one_kind_of_record_with_a_command_for_another_is_refused(desk, people):
    """`Approve task 8 [token of CALL-1]` was turned into a note on CALL-1."""
    token = desk.token(desk.call, people["dave"])
    row = desk.send(mail(f"Approve task {desk.ids['task']} [SB-{token}]", "dave@example.org"))
    assert row.status is InboundStatus.REJECTED
    assert f"names task {desk.ids['task']}" in row.outcome and desk.call.ref in row.outcome
    assert fresh(type(desk.task), desk.ids["task"]).status is TaskStatus.AWAITING_DECISION
    assert notes(HistoryEntry.call_id, desk.ids["call"]) == []


def test_rejections_read_the_same_whether_the_number_exists_or_is_not_yours(desk, people):
    # dave, verified (trusted account) so only his rights are in question: carol's call vs none at all.
    theirs = desk.send(mail(f"Close call {desk.ids['call']}", "dave@example.org"), to=SUBMIT)
    missing = desk.send(mail("Close call 987654", "dave@example.org"), to=SUBMIT)
    assert theirs.status is missing.status is InboundStatus.REJECTED
    same = [re.sub(r"\d+", "N", rejection_reason(r)) for r in (theirs, missing)]
    assert same[0] == same[1] == "There is no call N that you can close by mail."
    # The same without proof, for a task (erin: another customer, whose replies no limit holds back yet).
    create_person("erin@example.org", "Erin Customer")
    db.session.commit()
    theirs = desk.send(mail(f"Update task {desk.ids['task']}", "erin@example.org"))
    missing = desk.send(mail("Update task 987654", "erin@example.org"))
    same = [re.sub(r"\d+", "N", rejection_reason(r)) for r in (theirs, missing)]
    assert same[0] == same[1] and same[0]


def test_a_known_person_who_is_not_the_approver_is_told_so(desk, people):
    # carol raised the request, so she may see the task, but dave decides it.
    row = desk.send(mail(f"Approve task {desk.ids['task']}", "carol@example.org"))
    assert row.status is InboundStatus.REJECTED
    assert rejection_reason(row) == f"You are not the approver of {desk.task.ref}."
    assert fresh(type(desk.task), desk.ids["task"]).status is TaskStatus.AWAITING_DECISION


def test_unverified_note_on_a_resolved_call_reopens_nothing(desk, people):
    resolve_call(desk.call, people["anna"], "replaced the roller")
    db.session.commit()
    row = desk.send(mail(f"Update call {desk.ids['call']}", "carol@example.org"))
    assert row.status is InboundStatus.PROCESSED
    assert fresh(Call, desk.ids["call"]).status is CallStatus.RESOLVED


def test_unverified_note_shows_sender_not_verified_in_the_analysts_view(desk, people, login):
    desk.send(mail(f"Update call {desk.ids['call']}", "carol@example.org", "Please send the engineer to me."))
    page = login("anna").get(f"/calls/{desk.ids['call']}").get_data(as_text=True)
    entry = page.split("Please send the engineer to me.")[0].rsplit('<li class="entry', 1)[1]
    assert "Sender not verified" in entry and "Update by Carol Customer (sender not verified)" in entry


# --- DMARC: the topmost Authentication-Results of a trusted server, matching header.from ---------

DMARC_CASES = {
    "trusted topmost pass, header.from matches": (["mx.desk.test; dmarc=pass header.from=example.org"], True),
    "pass without header.from": (["mx.desk.test; dmarc=pass"], False),
    "header.from of another domain": (["mx.desk.test; dmarc=pass header.from=evil.example"], False),
    "trusted pass below an untrusted topmost": (
        ["evil.example; dmarc=none", "mx.desk.test; dmarc=pass header.from=example.org"], False),
    "untrusted authserv-id": (["evil.example; dmarc=pass header.from=example.org"], False),
    "dmarc fail": (["mx.desk.test; dmarc=fail header.from=example.org"], False),
}


@pytest.mark.parametrize("case", list(DMARC_CASES))
def test_dmarc_proof(app, desk, monkeypatch, case):
    monkeypatch.setitem(app.config, "TRUSTED_AUTHSERV_IDS", ("mx.desk.test",))
    headers, verified = DMARC_CASES[case]
    row = desk.send(mail(f"Close call {desk.ids['call']}", "carol@example.org", auth_results=headers))
    status = fresh(Call, desk.ids["call"]).status
    if verified:
        assert row.status is InboundStatus.PROCESSED and status is CallStatus.CLOSED
        assert "DMARC pass for example.org" in row.outcome
    else:
        assert row.status is InboundStatus.REJECTED and status is CallStatus.OPEN


def test_dmarc_proves_nothing_when_trusted_authserv_ids_is_unset(app, desk, monkeypatch):
    monkeypatch.setitem(app.config, "TRUSTED_AUTHSERV_IDS", ())
    row = desk.send(mail(f"Close call {desk.ids['call']}", "carol@example.org",
                         auth_results=["mx.desk.test; dmarc=pass header.from=example.org"]))
    assert row.status is InboundStatus.REJECTED and fresh(Call, desk.ids["call"]).status is CallStatus.OPEN


def test_trusted_authserv_ids_is_read_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.setenv("TRUSTED_AUTHSERV_IDS", " MX.desk.test, ,mx2.desk.test ")
    assert desk_config.from_environment(str(tmp_path))["TRUSTED_AUTHSERV_IDS"] == ("mx.desk.test", "mx2.desk.test")
    monkeypatch.delenv("TRUSTED_AUTHSERV_IDS")
    assert desk_config.from_environment(str(tmp_path))["TRUSTED_AUTHSERV_IDS"] == ()


# --- trusted submission -------------------------------------------------------------------

def test_trusted_submission_account_acts_with_the_senders_rights_only(desk, people):
    row = desk.send(mail(f"Close call {desk.ids['call']}", "carol@example.org"), to=SUBMIT)
    assert row.status is InboundStatus.PROCESSED and "trusted submission account submit" in row.outcome
    assert fresh(Call, desk.ids["call"]).status is CallStatus.CLOSED
    # Proof of who sent it is not a right: carol is not the task's approver.
    row = desk.send(mail(f"Approve task {desk.ids['task']}", "carol@example.org"), to=SUBMIT)
    assert row.status is InboundStatus.REJECTED


def test_trusted_submission_is_set_by_the_cli_and_shown_by_list(app):
    runner = app.test_cli_runner()
    added = runner.invoke(args=["mail", "accounts", "add", "--name", "staff", "--protocol", "lmtp",
                                "--address", "staff@desk.test", "--trusted-submission"])
    assert added.exit_code == 0, added.output
    plain = runner.invoke(args=["mail", "accounts", "add", "--name", "help", "--protocol", "lmtp",
                                "--address", "help@desk.test"])
    assert plain.exit_code == 0, plain.output
    listed = runner.invoke(args=["mail", "accounts", "list"]).output.splitlines()
    assert listed == ["help\tlmtp\tok\thelp@desk.test\t-",
                      "staff\tlmtp\tok\tstaff@desk.test; trusted submission\t-"]


def test_trusted_submission_is_off_by_default_and_set_on_the_admin_page(app, login):
    from switchboard.inbound.accounts import get_account

    admin = login("admin")
    form = admin.get("/admin/mail/accounts/new").get_data(as_text=True)
    assert "passed authenticated submission" in form
    assert 'name="trusted_submission"' in form and "checked" not in form.split('name="trusted_submission"')[0][-200:]
    response = admin.post("/admin/mail/accounts/new", {
        "name": "staff", "protocol": "lmtp", "addresses": "staff@desk.test", "trusted_submission": "y",
        "allow_new_calls": "y", "unknown_senders": "create", "poll_interval_seconds": "60", "batch_size": "100",
        "max_messages_per_session": "1000", "timeout_seconds": "30", "folder": "INBOX",
        "processed_folder": "Processed", "security": "tls"})
    assert response.status_code in (302, 303), response.get_data(as_text=True)[:2000]
    db.session.rollback()
    assert get_account("staff").trusted_submission is True
