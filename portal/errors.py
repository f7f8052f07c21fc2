"""Error pages: a domain error becomes a clear page with the right status,
never a traceback."""

from flask import render_template

from portal.htmx import is_htmx
from switchboard.db import db
from switchboard.errors import InvalidInput, InvalidTransition, NotFound, PermissionDenied

PAGES = {
    400: ("Bad request", "The request could not be understood."),
    403: ("Not allowed", "You are not allowed to do that."),
    404: ("Not found", "There is nothing here."),
    405: ("Not allowed", "That action is not available here."),
    409: ("Not possible now", "That cannot be done in the record's current state."),
    413: ("Too large", "The upload is larger than the desk accepts."),
    429: ("Too many attempts", "Too many attempts; wait a few minutes and try again."),
    500: ("Something went wrong", "The error has been logged. Nothing you entered was saved."),
}


def render_error(status: int, message: str | None = None):
    title, default = PAGES.get(status, PAGES[500])
    if is_htmx():
        # Shown in the page's message area, leaving the form the person was using in place.
        body = render_template("errors/fragment.html", status=status, title=title, message=message or default)
        return body, status, {"HX-Retarget": "#messages", "HX-Reswap": "innerHTML"}
    return render_template("errors/page.html", status=status, title=title, message=message or default), status


# A domain error the views let through becomes the page its kind calls for.
DOMAIN_ERRORS = {NotFound: 404, PermissionDenied: 403, InvalidTransition: 409, InvalidInput: 400}


def register(app) -> None:
    def http_error(exc):
        # Only a 400's description is ours to show (e.g. a missing CSRF token).
        return render_error(exc.code, exc.description if exc.code == 400 else None)

    for status in PAGES:
        if status != 500:
            app.register_error_handler(status, http_error)

    @app.errorhandler(500)
    def internal_error(_exc):
        db.session.rollback()
        return render_error(500)

    def domain_error(exc):
        db.session.rollback()
        status = next(DOMAIN_ERRORS[kind] for kind in type(exc).__mro__ if kind in DOMAIN_ERRORS)
        return render_error(status, exc.message)

    for error in DOMAIN_ERRORS:
        app.register_error_handler(error, domain_error)
