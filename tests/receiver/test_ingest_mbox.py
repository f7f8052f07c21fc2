"""`mail ingest` of an mbox file (issue 10, item 13): each message found between `From `
separator lines is stored (without them) and acted on on its own, and the output says so; a
file with one message, with or without its From line, is stored and read as it always was."""

import sqlalchemy as sa

from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.inbound.models import InboundMessage

from .conftest import make_mail

SEPARATOR = b"From carol@example.org Mon Mar  3 09:15:00 2025\n"


def lf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def delivered(raw: bytes) -> bytes:
    """The message as a mail store keeps it: the delivery's trace fields on top."""
    return (b"Return-Path: <carol@example.org>\nReceived: from mx.example.org by desk.test; "
            b"Mon, 3 Mar 2025 09:15:01 +0000\n" + lf(raw))


def mbox(*messages: bytes) -> bytes:
    return b"".join(SEPARATOR + delivered(m) + b"\n" for m in messages)


def stored() -> list[bytes]:
    db.session.rollback()
    return list(db.session.scalars(sa.select(InboundMessage.raw_sha256).order_by(InboundMessage.id)))


def summaries() -> list[str]:
    return list(db.session.scalars(sa.select(Call.summary).order_by(Call.id)))


def test_each_message_of_an_mbox_logs_its_own_call_and_the_output_says_so(app, tmp_path):
    body = "The printer on floor 2 is jammed again.\n\nFrom here on it only prints blank pages.\n"
    path = tmp_path / "export.mbox"
    path.write_bytes(mbox(make_mail(subject="Log call: printer", body=body),
                          make_mail(subject="Log call: scanner"), make_mail(subject="Log call: badge reader")))
    result = app.test_cli_runner().invoke(args=["mail", "ingest", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(": ")[:2] for line in lines[:3]] == [
        [f"{path}#1", "processed"], [f"{path}#2", "processed"], [f"{path}#3", "processed"]]
    assert lines[3] == f"{path}: an mbox file of 3 messages: each ingested on its own (above, as {path}#N)"
    assert summaries() == ["printer", "scanner", "badge reader"]
    # The body line that starts with "From " (no header after it) did not split the first message.
    first = db.session.scalar(sa.select(Call).order_by(Call.id))
    assert "From here on it only prints blank pages." in first.description


def test_messages_of_an_mbox_are_stored_without_the_mbox_lines(app, tmp_path):
    from switchboard.blobs import store as blob_store

    messages = [make_mail(subject="Log call: one"), make_mail(subject="Log call: two")]
    path = tmp_path / "two.mbox"
    path.write_bytes(mbox(*messages))
    assert app.test_cli_runner().invoke(args=["mail", "ingest", str(path)]).exit_code == 0
    assert [blob_store.get(sha) for sha in stored()] == [delivered(m) for m in messages]


def test_a_file_with_one_message_after_a_from_line_reads_as_one_message(app, tmp_path):
    from switchboard.blobs import store as blob_store

    path = tmp_path / "one.eml"
    path.write_bytes(mbox(make_mail(subject="Log call: single")))
    result = app.test_cli_runner().invoke(args=["mail", "ingest", str(path)])
    assert result.exit_code == 0, result.output
    call = db.session.scalar(sa.select(Call))
    assert result.output == f"{path}: processed: Logged {call.ref}.\n"
    assert call.summary == "single"
    assert [blob_store.get(sha) for sha in stored()] == [path.read_bytes()]  # as the file holds it


def test_an_mbox_message_over_the_size_limit_is_refused_and_the_others_are_ingested(app, tmp_path):
    app.config["LMTP_MAX_MESSAGE_BYTES"] = 20_000
    try:
        path = tmp_path / "big.mbox"
        path.write_bytes(mbox(make_mail(subject="Log call: small"), make_mail(subject="Log call: huge", size=40_000),
                              make_mail(subject="Log call: after")))
        result = app.test_cli_runner().invoke(args=["mail", "ingest", str(path)])
    finally:
        app.config["LMTP_MAX_MESSAGE_BYTES"] = 36700160
    assert result.exit_code == 65, result.output
    assert f"{path}#2: refused: larger than LMTP_MAX_MESSAGE_BYTES (20000 bytes); nothing stored (exit 65)" \
        in result.output
    assert summaries() == ["small", "after"]


def test_several_files_mbox_and_plain_in_one_run(app, tmp_path):
    box, plain = tmp_path / "a.mbox", tmp_path / "b.eml"
    box.write_bytes(mbox(make_mail(subject="Log call: a1"), make_mail(subject="Log call: a2")))
    plain.write_bytes(make_mail(subject="Log call: b"))
    result = app.test_cli_runner().invoke(args=["mail", "ingest", str(box), str(plain)])
    assert result.exit_code == 0, result.output
    assert [line.split(": ")[0] for line in result.output.splitlines()] == [f"{box}#1", f"{box}#2", str(box), str(plain)]
    assert summaries() == ["a1", "a2", "b"]


def test_a_bounce_that_quotes_the_returned_mail_with_its_from_line_stays_one_message(app, tmp_path):
    # The quoted mail has a "From " line after an empty line and a header, but no delivery
    # field: a mail store did not write it, the bounce's sender pasted it.
    bounce = (b"Return-Path: <>\nFrom: postmaster@example.net\nTo: carol@example.org\n"
              b"Auto-Submitted: auto-replied\nSubject: email bounce notification\n\n"
              b"Your message was rejected: mailbox full.\n\nbounced E-Mail:\n\n"
              b"From carol@example.org  Sat Oct  4 08:00:07 2025\nFrom: Carol <carol@example.org>\n"
              b"To: dave@example.net\nSubject: Log call: quoted\n\nThe printer is jammed.\n")
    path = tmp_path / "bounce.eml"
    path.write_bytes(SEPARATOR + bounce)
    result = app.test_cli_runner().invoke(args=["mail", "ingest", str(path)])
    assert result.output.startswith(f"{path}: ignored: "), result.output
    assert len(result.output.splitlines()) == 1 and summaries() == []


def test_a_message_after_a_closed_multipart_starts_a_new_one_without_delivery_fields(app, tmp_path):
    # As a mail client's own folder keeps sent mail: no trace fields, but the multipart
    # before it has ended, so the "From " line can only be the mbox's.
    multipart = (b"From: Carol <carol@example.org>\nTo: help@desk.test\nSubject: Log call: first\n"
                 b"Message-ID: <m1@example.org>\nMIME-Version: 1.0\n"
                 b'Content-Type: multipart/mixed; boundary="XYZ"\n\n--XYZ\nContent-Type: text/plain\n\n'
                 b"Scanner offline.\n--XYZ--\n")
    path = tmp_path / "sent.mbox"
    path.write_bytes(SEPARATOR + multipart + b"\n" + SEPARATOR + lf(make_mail(subject="Log call: second")) + b"\n")
    result = app.test_cli_runner().invoke(args=["mail", "ingest", str(path)])
    assert result.exit_code == 0, result.output
    assert summaries() == ["first", "second"]
