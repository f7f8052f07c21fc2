"""Which part of a mail is its body (issue 10, item 6): MimeKit's rules, which users of other
clients expect. Each shape is a message written here; what is checked is what the analyst
sees: the call's text, its HTML, and which parts are kept as files (byte for byte)."""

import base64

from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.history.services import timeline
from switchboard.inbound.models import InboundStatus
from switchboard.inbound.parse import parse_message
from tests.inbound.test_pipeline import account, deliver  # noqa: F401 (account is a fixture)

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


def part(content_type: str, body: str, **headers: str) -> str:
    lines = [f"Content-Type: {content_type}"] + [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return "\n".join(lines) + "\n\n" + body


def multipart(subtype: str, boundary: str, *parts: str, params: str = "") -> str:
    inner = "".join(f"--{boundary}\n{p}\n" for p in parts)
    return part(f'multipart/{subtype}; boundary="{boundary}"{params}', f"{inner}--{boundary}--\n")


def message(body_part: str, subject: str = "Printer on floor 3") -> bytes:
    return ("From: Carol <carol@example.org>\nTo: help@desk.test\nSubject: " + subject
            + "\nMessage-ID: <" + str(abs(hash(body_part))) + "@example.org>\nMIME-Version: 1.0\n"
            + body_part).encode()


def png_part(name: str = "shot.png", cid: str | None = None) -> str:
    headers = {"Content_Transfer_Encoding": "base64"}
    if cid:
        headers["Content_ID"] = f"<{cid}>"
    else:
        headers["Content_Disposition"] = f'attachment; filename="{name}"'
    return part(f'image/png; name="{name}"', base64.b64encode(PNG).decode() + "\n", **headers)


def files(parsed):
    return {a.filename: a.data for a in parsed.attachments}


# -- the two traps of the held-back set


def test_html_part_after_the_alternative_in_mixed_is_a_file_not_the_calls_html():
    parsed = parse_message(message(multipart(
        "mixed", "OUT",
        multipart("alternative", "ALT", part("text/plain", "Tray 2 jams."), part("text/html", "<p>Tray 2 jams.</p>")),
        part("text/html", "<p>Sent from the Contoso gateway</p>"))))
    assert parsed.text == "Tray 2 jams."
    assert "Tray 2 jams." in parsed.html and "Contoso" not in parsed.html
    assert list(files(parsed).values()) == [b"<p>Sent from the Contoso gateway</p>"]


def test_plain_part_after_an_html_body_is_a_file_and_the_text_comes_from_the_html():
    parsed = parse_message(message(multipart(
        "mixed", "OUT",
        part("text/html", "<p>The <b>scanner</b> is offline.</p>"),
        part("text/plain", "forwarded log excerpt: E42"))))
    assert parsed.text == "The scanner is offline."
    assert "E42" not in parsed.text and "scanner" in parsed.html
    assert list(files(parsed).values()) == [b"forwarded log excerpt: E42"]


# -- the other shapes


def test_alternative_inside_mixed_with_a_file():
    parsed = parse_message(message(multipart(
        "mixed", "OUT",
        multipart("alternative", "ALT", part("text/plain", "See the screenshot."),
                  part("text/html", "<p>See the <i>screenshot</i>.</p>")),
        png_part())))
    assert parsed.text == "See the screenshot." and "<i>screenshot</i>" in parsed.html
    assert files(parsed) == {"shot.png": PNG}


def test_related_inside_alternative_keeps_the_inline_image_and_both_versions_are_the_body():
    parsed = parse_message(message(multipart(
        "alternative", "ALT",
        part("text/plain", "Logo below."),
        multipart("related", "REL", part("text/html", '<p>Logo below.</p><img src="cid:logo@x">'),
                  png_part("logo.png", cid="logo@x")))))
    assert parsed.text == "Logo below." and 'src="cid:logo@x"' in parsed.html
    assert [(a.filename, a.inline, a.content_id, a.data) for a in parsed.attachments] == [
        ("logo.png", True, "logo@x", PNG)]


def test_text_first_then_an_html_attachment():
    parsed = parse_message(message(multipart(
        "mixed", "OUT",
        part("text/plain", "Report attached."),
        part("text/html", "<h1>Report</h1>", Content_Disposition='attachment; filename="report.html"'))))
    assert parsed.text == "Report attached." and parsed.html is None
    assert files(parsed) == {"report.html": b"<h1>Report</h1>"}


def test_nested_mixed_with_a_second_text_part_is_not_added_to_the_body():
    parsed = parse_message(message(multipart(
        "mixed", "OUT",
        part("text/plain", "First, the body."),
        multipart("mixed", "IN", part("text/plain", "A second text part."), png_part()))))
    assert parsed.text == "First, the body."
    assert sorted(files(parsed).values()) == sorted([b"A second text part.", PNG])


def test_a_mailing_list_footer_after_the_body_is_kept_as_a_file():
    parsed = parse_message(message(multipart(
        "mixed", "OUT", part("text/plain", "The VPN drops hourly."),
        part("text/plain", "_______________\nlist mailing list"))))
    assert parsed.text == "The VPN drops hourly."
    assert b"list mailing list" in list(files(parsed).values())[0]


def test_only_html():
    parsed = parse_message(message(part("text/html", "<p>Only <b>HTML</b> here.</p>")))
    assert parsed.text == "Only HTML here." and "<b>HTML</b>" in parsed.html and parsed.attachments == ()


def test_only_an_attachment_gives_no_text_and_keeps_the_file():
    parsed = parse_message(message(multipart("mixed", "OUT", png_part())))
    assert parsed.text == "" and parsed.html is None and files(parsed) == {"shot.png": PNG}


def test_a_lone_text_part_sent_as_an_attachment_is_a_file():
    raw = message(part("text/plain", "col1,col2", Content_Disposition='attachment; filename="data.csv"'))
    parsed = parse_message(raw)
    assert parsed.text == "" and files(parsed) == {"data.csv": b"col1,col2"}


def test_alternative_takes_the_last_version_of_each_kind_and_drops_no_file():
    parsed = parse_message(message(multipart(
        "alternative", "ALT", part("text/plain", "older plain version"),
        part("text/plain", "richer plain version"), part("text/html", "<p>html version</p>"))))
    assert parsed.text == "richer plain version" and "html version" in parsed.html
    assert parsed.attachments == ()  # the other version is the same text again, not a file


def test_related_root_named_by_start_is_the_body():
    parsed = parse_message(message(multipart(
        "related", "REL",
        part("text/plain", "not the root", Content_ID="<other@x>"),
        part("text/html", "<p>the root</p>", Content_ID="<root@x>"),
        params='; type="text/html"; start="<root@x>"')))
    assert parsed.text == "the root" and "the root" in parsed.html
    assert list(files(parsed).values()) == [b"not the root"]


def test_mixed_whose_first_text_part_is_html_has_no_plain_body_even_if_a_later_alternative_has():
    parsed = parse_message(message(multipart(
        "mixed", "OUT", part("text/html", "<p>top html</p>"),
        multipart("alternative", "ALT", part("text/plain", "inner plain"), part("text/html", "<p>inner</p>")))))
    assert parsed.text == "top html" and "inner" not in parsed.html
    assert sorted(files(parsed).values()) == [b"<p>inner</p>", b"inner plain"]


# -- end to end: what the analyst sees on the call


def test_call_from_the_html_body_trap_shows_the_html_text_and_the_extra_part_as_a_file(account):
    raw = message(multipart(
        "mixed", "OUT",
        part("text/html", "<p>The <b>scanner</b> is offline.</p>"),
        part("text/plain", "forwarded log excerpt: E42")), subject="Scanner offline")
    row = deliver(raw, account)
    assert row.status is InboundStatus.PROCESSED
    call = db.session.get(Call, row.call_id)
    assert "The scanner is offline." in call.description and "E42" not in call.description
    assert [a.filename for a in timeline(call)[0].attachments] == ["attachment.txt"]


def test_call_from_alternative_in_mixed_shows_only_the_body_text(account):
    raw = message(multipart(
        "mixed", "OUT",
        multipart("alternative", "ALT", part("text/plain", "Tray 2 jams."), part("text/html", "<p>Tray 2 jams.</p>")),
        part("text/html", "<p>Sent from the Contoso gateway</p>")), subject="Tray 2")
    row = deliver(raw, account)
    call = db.session.get(Call, row.call_id)
    assert "Tray 2 jams." in call.description and "Contoso" not in call.description
