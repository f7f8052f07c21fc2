"""Decompression and entity bombs in incoming mail: a gzip and a zip of 100 MB of zeros as
attachments, and a billion-laughs DOCTYPE in the HTML part. Nothing in the desk unpacks
an attachment or expands a DTD entity: the files are kept byte for byte, the text stays
the size the sender wrote."""

import gzip
import io
import zipfile
from email.message import EmailMessage

import sqlalchemy as sa

from switchboard.blobs import store
from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.history.models import Attachment, HistoryEntry
from tests.security.test_reply_limits import acted_on

UNPACKED = 100 * 1024 * 1024

LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          + "".join(f'<!ENTITY lol{i} "' + ("&lol;" if i == 1 else f"&lol{i - 1};") * 10 + '">'
                    for i in range(1, 10))
          + ']><html><body><p>Printer down &lol9;</p></body></html>')


def _bombs() -> dict[str, bytes]:
    zeros = bytes(UNPACKED)
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.bin", zeros)
    return {"zeros.bin.gz": gzip.compress(zeros, compresslevel=9), "zeros.zip": packed.getvalue()}


def test_bombs_are_kept_as_sent_and_never_unpacked(app, desk_accounts, people):
    bombs = _bombs()
    mail = EmailMessage()
    mail["From"] = "eve@attacker.example"
    mail["To"] = "help@desk.test"
    mail["Subject"] = "Printer down"
    mail["Message-ID"] = "<bombs-1@attacker.example>"
    mail.set_content(LAUGHS, subtype="html")
    for name, data in bombs.items():
        mail.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    raw = mail.as_bytes()
    assert len(raw) < 2 * 1024 * 1024  # small on the wire

    [inbound] = acted_on([raw])
    assert "Logged CALL-" in inbound.outcome, inbound.outcome
    call = db.session.scalar(sa.select(Call))
    entries = db.session.scalars(sa.select(HistoryEntry).where(HistoryEntry.call_id == call.id)).all()
    text = " ".join(e.body or "" for e in entries) + (call.description or "")
    assert "Printer down" in text
    assert text.count("lol") < 100 and len(text) < 10_000  # the entities were never expanded
    kept = {a.filename: store.get(a.blob_sha256) for a in db.session.scalars(sa.select(Attachment))}
    assert kept == bombs  # byte for byte, still packed
