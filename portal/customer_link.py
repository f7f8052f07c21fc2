"""The page a customer's mail links to: one call, read-only, opened by the signed token in
its URL (switchboard.calls.customer_link), no login. Every way a link can be wrong answers
the same 404, byte for byte, so a link tells nothing about calls it does not open."""

import logging

from flask import Blueprint, make_response, render_template

from switchboard.calls.customer_link import customer_timeline, read_token
from switchboard.db import db

log = logging.getLogger(__name__)

bp = Blueprint("customer_link", __name__)

# The token in the URL is a credential: never sent on to another site, never kept by a
# browser's or a proxy's cache.
HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, no-store",
    "X-Robots-Tag": "noindex, nofollow",
}


@bp.get("/follow/<token>")
def follow(token):
    try:
        call = read_token(token)
        if call is None:
            return _answer(render_template("customer_link/not_found.html"), 404)
        entries, more = customer_timeline(call)
        return _answer(render_template("customer_link/call.html", call=call, entries=entries, more=more), 200)
    except Exception:
        # Flask's own error log names the request's path, and the path holds the token:
        # logged here without it (the access log is the only place a link is written).
        db.session.rollback()
        log.exception("the page of a customer link failed")
        return _answer(render_template("customer_link/failed.html"), 500)


def _answer(body: str, status: int):
    response = make_response(body, status)
    response.headers.update(HEADERS)
    return response
