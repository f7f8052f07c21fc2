"""The page a customer's mail links to: one call, read-only, opened by the signed token in
its URL (switchboard.calls.customer_link), no login. Every way a link can be wrong answers
the same 404, byte for byte, so a link tells nothing about calls it does not open."""

from flask import Blueprint, make_response, render_template

from switchboard.calls.customer_link import customer_timeline, read_token

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
    call = read_token(token)
    if call is None:
        return _answer(render_template("customer_link/not_found.html"), 404)
    entries, more = customer_timeline(call)
    return _answer(render_template("customer_link/call.html", call=call, entries=entries, more=more), 200)


def _answer(body: str, status: int):
    response = make_response(body, status)
    response.headers.update(HEADERS)
    return response
