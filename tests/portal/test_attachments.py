"""Files on a call: uploaded with a note or a new call, listed in the
timeline, downloaded as attachments that a browser never runs."""

import io
import re

from switchboard.calls.models import Call
from switchboard.calls.services import log_call
from switchboard.db import db
from switchboard.history.services import NewAttachment


def _links(html):
    return dict((name, url) for url, name in re.findall(r'<a href="(/attachments/\d+)" download>(.*?)</a>', html))


def test_upload_with_a_note_and_download_it(login, people):
    portal = login("anna")
    call = log_call(people["anna"], "Printer jammed", customer=people["carol"])
    db.session.commit()
    response = portal.post(
        f"/calls/{call.id}/update",
        {
            "update-note": "Photos of the tray",
            "update-files": [
                (io.BytesIO(b"\x89PNG\r\n\x1a\nfake"), "tray.png", "image/png"),
                (io.BytesIO(b"<script>alert(1)</script>"), "../../evil page.html", "text/html"),
            ],
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 303
    links = _links(portal.get(f"/calls/{call.id}").get_data(as_text=True))
    assert set(links) == {"tray.png", "evil page.html"}

    png = portal.get(links["tray.png"])
    assert png.status_code == 200 and png.data == b"\x89PNG\r\n\x1a\nfake"
    assert png.headers["Content-Type"] == "image/png"
    assert png.headers["Content-Disposition"] == "attachment; filename=tray.png"
    assert png.headers["X-Content-Type-Options"] == "nosniff"

    # HTML someone uploaded must never render as a page of the desk.
    page = portal.get(links["evil page.html"])
    assert page.data == b"<script>alert(1)</script>"
    assert page.headers["Content-Type"] == "application/octet-stream"
    assert page.headers["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in page.headers["Content-Security-Policy"]


def test_log_a_call_with_attachments(login, people):
    portal = login("anna")
    response = portal.post(
        "/calls/new",
        {
            "customer_email": "carol@example.org",
            "summary": "Error on screen",
            "priority": "3",
            "files": [(io.BytesIO(b"error text"), "error.txt", "text/plain")],
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 303
    call = db.session.scalars(db.select(Call)).one()
    links = _links(portal.get(f"/calls/{call.id}").get_data(as_text=True))
    download = portal.get(links["error.txt"])
    assert download.data == b"error text" and download.headers["Content-Type"].startswith("text/plain")


def test_missing_attachment_is_404_and_downloads_need_login(client, login, people):
    call = log_call(
        people["anna"], "With file", customer=people["carol"],
        attachments=[NewAttachment("a.txt", "text/plain", b"hello")],
    )
    db.session.commit()
    attachment_id = call and db.session.scalar(db.text("SELECT max(id) FROM attachment"))
    assert client.get(f"/attachments/{attachment_id}").status_code == 302  # to the login page
    portal = login("bob")
    assert portal.get(f"/attachments/{attachment_id}").data == b"hello"
    assert portal.get(f"/attachments/{attachment_id + 1}").status_code == 404
