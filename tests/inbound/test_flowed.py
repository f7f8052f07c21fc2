"""format=flowed (RFC 3676) is un-flowed (issue 10, item 7): soft line breaks join into the
paragraphs the sender typed, with and without DelSp=yes, quoted lines by quote depth, space-
stuffing undone, the "-- " signature separator kept; and before quoted text is stripped."""

from switchboard.calls.services import log_call
from switchboard.db import db
from switchboard.history.services import timeline
from switchboard.inbound.flowed import unflow
from switchboard.inbound.models import InboundStatus
from switchboard.inbound.parse import parse_message
from tests.inbound.test_pipeline import account, deliver  # noqa: F401 (account is a fixture)


def flowed_mail(body: str, params: str = "; format=flowed", subject: str = "Printer", cte: str = "7bit") -> bytes:
    return ("From: carol@example.org\r\nTo: help@desk.test\r\nSubject: " + subject + "\r\n"
            "Message-ID: <" + str(abs(hash(body + subject))) + "@example.org>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8{params}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
            + body).encode()


def test_soft_line_breaks_join_into_one_paragraph():
    # RFC 3676 4.1: a line ending in a space continues on the next; the space stays.
    raw = flowed_mail("The printer on floor 3 prints every page \r\ntwice since the update \r\nof Monday.\r\n"
                      "\r\nSecond paragraph.\r\n")
    assert parse_message(raw).text == ("The printer on floor 3 prints every page twice since the update of Monday.\n"
                                       "\nSecond paragraph.")


def test_without_format_flowed_line_breaks_stay():
    raw = flowed_mail("one line \r\nanother line\r\n", params="")
    assert parse_message(raw).text == "one line \nanother line"


def test_delsp_yes_removes_the_space_before_each_soft_break():
    # RFC 3676 4.2: with DelSp=yes the space was added by the sender's wrapping, not typed.
    raw = flowed_mail("Ein Donaudampfschiff \r\nfahrtsgesellschafts \r\nkapitän.\r\n",
                      params='; format=flowed; delsp="yes"')
    assert parse_message(raw).text == "Ein Donaudampfschifffahrtsgesellschaftskapitän."
    without = flowed_mail("Ein Donaudampfschiff \r\nfahrt\r\n", params="; format=Flowed; DelSp=no")
    assert parse_message(without).text == "Ein Donaudampfschiff fahrt"


def test_quoted_flowed_lines_join_only_at_the_same_depth():
    text = unflow("> the old \r\n> text, wrapped\r\n>> older \r\n>> still\r\n> back \r\nnew text \r\nends here")
    assert text.split("\n") == ["> the old text, wrapped", ">> older still", "> back", "new text ends here"]


def test_space_stuffing_is_undone():
    # RFC 3676 4.4: a line starting with a space, ">" or "From " was given one more space.
    text = unflow(" From the start\r\n >not a quote\r\n  two spaces typed\r\n")
    assert text.split("\n")[:3] == ["From the start", ">not a quote", " two spaces typed"]


def test_the_signature_separator_stays_a_line_of_its_own():
    raw = flowed_mail("Thanks, \r\nCarol\r\n-- \r\nCarol Smith \r\nFacilities\r\n")
    assert parse_message(raw).text == "Thanks, Carol\n-- \nCarol Smith Facilities"
    # A soft break right before the separator does not swallow it.
    assert unflow("Bye \r\n-- \r\nsig") == "Bye\n-- \nsig"


def test_flowed_quoted_printable_body_is_unflowed_after_decoding():
    raw = flowed_mail("caf=C3=A9 au lait, \r\nplease=\r\n \r\nmore\r\n", cte="quoted-printable")
    assert parse_message(raw).text == "café au lait, please more"


def test_a_flowed_text_attachment_keeps_its_bytes():
    raw = ("From: carol@example.org\nTo: help@desk.test\nSubject: x\nMIME-Version: 1.0\n"
           'Content-Type: multipart/mixed; boundary="B"\n\n--B\nContent-Type: text/plain\n\nBody\n--B\n'
           'Content-Type: text/plain; format=flowed\nContent-Disposition: attachment; filename="notes.txt"\n\n'
           "soft \nbreak\n--B--\n").encode()
    parsed = parse_message(raw)
    assert parsed.text == "Body" and parsed.attachments[0].data == b"soft \nbreak"


def test_a_flowed_reply_is_unflowed_before_its_quote_is_stripped(account, people):
    call = log_call(people["carol"], "Projector flickers")
    db.session.commit()
    body = ("It flickers again after the new cable was \r\nfitted this morning.\r\n\r\n"
            "On Mon, 30 Nov 2026, Service Desk wrote:\r\n> We fitted a new \r\n> cable.\r\n")
    row = deliver(flowed_mail(body, subject=f"Re: Update call #{call.id}"), account)
    assert row.status is InboundStatus.PROCESSED and row.call_id == call.id
    assert timeline(call)[-1].body == "It flickers again after the new cable was fitted this morning."


def test_a_call_from_flowed_mail_shows_whole_paragraphs(account):
    raw = flowed_mail("The badge reader at the \r\nsouth door rejects every \r\ncard.\r\n", subject="Badge reader")
    row = deliver(raw, account)
    from switchboard.calls.models import Call

    call = db.session.get(Call, row.call_id)
    assert "The badge reader at the south door rejects every card." in call.description
