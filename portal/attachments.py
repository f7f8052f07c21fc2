"""Downloading an attachment from a timeline. Whoever may see the call,
request or task may download its files; the bytes come from the blob store
and always as a download, never rendered by the browser as a page."""

from io import BytesIO

from flask import Blueprint, send_file

from portal.auth import current_person
from switchboard.blobs import store
from switchboard.calls.services import get_call
from switchboard.db import db
from switchboard.errors import NotFound
from switchboard.history.models import Attachment
from switchboard.requests.services import get_request, get_task

bp = Blueprint("attachments", __name__, url_prefix="/attachments")

# Types a browser shows harmlessly if it ever opens one; anything else
# (HTML, SVG, XML, scripts...) goes out as plain bytes.
SAFE_TYPES = {
    "application/pdf",
    "application/zip",
    "image/gif",
    "image/jpeg",
    "image/png",
    "image/webp",
    "text/csv",
    "text/plain",
}


def safe_content_type(declared: str | None) -> str:
    kind = (declared or "").split(";", 1)[0].strip().lower()
    return kind if kind in SAFE_TYPES else "application/octet-stream"


@bp.get("/<int:attachment_id>")
def download(attachment_id):
    attachment = db.session.get(Attachment, attachment_id)
    if attachment is None:
        raise NotFound("There is no such attachment.")
    _check_visible(attachment)
    response = send_file(
        BytesIO(store.get(attachment.blob_sha256)),
        mimetype=safe_content_type(attachment.content_type),
        as_attachment=True,
        download_name=attachment.filename or "attachment",
        max_age=0,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Even if a browser did open it, nothing in it may run.
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def _check_visible(attachment) -> None:
    entry = attachment.entry
    me = current_person()
    if entry.call_id is not None:
        get_call(entry.call_id, me)
    elif entry.request_id is not None:
        get_request(entry.request_id, me)
    else:
        get_task(entry.task_id, me)
    if entry.internal and not me.is_staff:
        raise NotFound("There is no such attachment.")
