"""`mail ingest`: a message from a file or a pipe, the way an MTA's pipe
transport or a script hands it over."""

import sqlalchemy as sa

from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.inbound.models import InboundMessage

from .conftest import make_mail, storage_fails


def rows() -> list[InboundMessage]:
    db.session.rollback()
    return list(db.session.scalars(sa.select(InboundMessage).order_by(InboundMessage.id)))


def test_ingest_a_file_logs_a_call_and_says_so(app, tmp_path):
    path = tmp_path / "printer.eml"
    path.write_bytes(make_mail())
    result = app.test_cli_runner().invoke(args=["mail", "ingest", str(path)])
    assert result.exit_code == 0, result.output
    call = db.session.scalar(sa.select(Call))
    assert result.output == f"{path}: processed: Logged {call.ref}.\n"
    [row] = rows()
    assert row.source == "pipe" and row.account_id is None


def test_ingest_from_stdin_for_a_recipient_uses_its_account(app, people, desk_accounts):
    # carol is known (people), so the rejection is about the call, not about her address.
    mail = make_mail(subject="Close call 999", to="sales@desk.test")
    result = app.test_cli_runner().invoke(
        args=["mail", "ingest", "--recipient", "sales@desk.test", "--sender", "carol@example.org", "-"], input=mail)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("<stdin>: rejected: ")
    assert "999" in result.output
    [row] = rows()
    assert row.account_id == desk_accounts["sales"]
    assert row.envelope_from == "carol@example.org" and row.envelope_to == ["sales@desk.test"]


def test_ingest_several_files_one_line_each_and_a_repeat_is_counted_not_redone(app, desk_accounts, tmp_path):
    first, second = tmp_path / "a.eml", tmp_path / "b.eml"
    first.write_bytes(make_mail(subject="Log call: first"))
    second.write_bytes(make_mail(subject="Log call: second"))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["mail", "ingest", "--account", "help", str(first), str(second)])
    assert result.exit_code == 0, result.output
    assert [line.split(": ")[:2] for line in result.output.splitlines()] == [
        [str(first), "processed"], [str(second), "processed"]]
    again = runner.invoke(args=["mail", "ingest", "--account", "help", str(first)])
    assert again.exit_code == 0
    assert again.output.startswith(f"{first}: processed: already received (delivery 2); Logged CALL-")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Call)) == 2


def test_ingest_exits_75_when_the_message_cannot_be_stored(app, tmp_path):
    path = tmp_path / "mail.eml"
    path.write_bytes(make_mail())
    with storage_fails():
        result = app.test_cli_runner().invoke(args=["mail", "ingest", str(path)])
    assert result.exit_code == 75  # EX_TEMPFAIL: the MTA keeps the mail and retries
    assert f"{path}: not stored:" in result.output
    assert rows() == []
    retry = app.test_cli_runner().invoke(args=["mail", "ingest", str(path)])
    assert retry.exit_code == 0 and len(rows()) == 1


def test_ingest_a_missing_file_fails_clearly_and_still_takes_the_others(app, tmp_path):
    path = tmp_path / "real.eml"
    path.write_bytes(make_mail())
    result = app.test_cli_runner().invoke(args=["mail", "ingest", str(tmp_path / "missing.eml"), str(path)])
    assert result.exit_code == 66  # EX_NOINPUT
    assert f"{tmp_path / 'missing.eml'}: not read: No such file or directory" in result.output
    assert f"{path}: processed:" in result.output


def test_ingest_for_an_unknown_recipient_or_account_stores_nothing(app, desk_accounts, tmp_path):
    path = tmp_path / "mail.eml"
    path.write_bytes(make_mail())
    runner = app.test_cli_runner()
    nobody = runner.invoke(args=["mail", "ingest", "--recipient", "nobody@elsewhere.test", str(path)])
    assert nobody.exit_code == 67 and "no active incoming account receives for nobody@elsewhere.test" in nobody.output
    typo = runner.invoke(args=["mail", "ingest", "--account", "hlep", str(path)])
    assert typo.exit_code == 75 and "no incoming account named 'hlep'" in typo.output
    assert rows() == []


def test_issue8_ingest_exits_75_with_one_line_when_the_commit_fails(app, desk_accounts, tmp_path):
    """The database refuses the COMMIT itself (faults.commit_fails): exit 75,
    one line saying why, nothing stored; the MTA's rerun stores it once."""
    from .faults import commit_fails

    path = tmp_path / "mail.eml"
    path.write_bytes(make_mail())
    with commit_fails():
        result = app.test_cli_runner().invoke(args=["mail", "ingest", "--account", "help", str(path)])
    assert result.exit_code == 75, result.output
    [line] = result.output.splitlines()
    assert line.startswith(f"{path}: not stored: ") and line.endswith("(exit 75: try again later)")
    assert "Traceback" not in result.output
    assert rows() == []
    retry = app.test_cli_runner().invoke(args=["mail", "ingest", "--account", "help", str(path)])
    assert retry.exit_code == 0, retry.output
    assert [r.deliveries for r in rows()] == [1]
