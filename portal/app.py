"""Adds the web side to the app: login, CSRF, rate limits, error pages,
security headers and the feature blueprints."""

import os
import sys

from flask import Blueprint, Flask, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFProtect

from portal.assets import init_assets
from portal.auth import current_person, limiter, login_manager
from portal.htmx import is_htmx
from portal.numbers import BoundedInt
from switchboard.permissions import allowed

csrf = CSRFProtect()

# The portal's templates (the app's root is the repository, not this package).
templates = Blueprint("portal", __name__, template_folder="templates")
STATIC_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

# Everything else needs a logged-in analyst: new pages are private unless listed here.
PUBLIC_ENDPOINTS = {"auth.login", "static", "customer_link.follow"}  # the last: a signed link, no login

# No inline script or style anywhere: htmx is configured through a meta tag
# and its indicator styles are turned off there.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def init_portal(app: Flask) -> None:
    app.config.setdefault("DESK_NAME", "Switchboard")
    # Threads that only compute (a template preview, up to its 1 s budget) keep the GIL for
    # Python's 5 ms switch interval each time another thread waits for it: with eight of them, a
    # page thread waited ~40 ms at every return from the database or the socket, and a small page
    # took a second. 1 ms hands the GIL on sooner; computing threads barely notice.
    sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
    # Flask's own /static route serves the portal's files (stylesheet, vendored htmx).
    app.static_folder = STATIC_FOLDER
    # ...under fingerprinted URLs, cached for a year, compressed (portal/assets.py).
    init_assets(app, STATIC_FOLDER)
    # Before any blueprint: their rules pick the converter up when they are added.
    app.url_map.converters["int"] = BoundedInt
    csrf.init_app(app)
    login_manager.init_app(app)
    limiter.init_app(app)

    from portal import admin, attachments, auth, calls, customer_link, errors, me, requests, work

    app.register_blueprint(templates)
    app.register_blueprint(auth.bp)
    app.register_blueprint(work.bp)
    app.register_blueprint(calls.bp)
    app.register_blueprint(requests.bp)
    app.register_blueprint(attachments.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(me.bp)
    app.register_blueprint(customer_link.bp)
    errors.register(app)

    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    app.add_template_filter(when)
    app.add_template_filter(filesize)
    app.before_request(_require_login)
    app.after_request(_security_headers)
    app.context_processor(_template_globals)


def _require_login():
    if request.endpoint is None or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        if is_htmx():
            # A fragment request cannot show a login page: send the whole tab there.
            return "", 401, {"HX-Redirect": url_for("auth.login")}
        return login_manager.unauthorized()
    return None


def _security_headers(response):
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint != "static":
        # Pages show personal data; a shared browser must not keep them.
        headers.setdefault("Cache-Control", "no-store")
    return response


def _template_globals():
    return {"me": current_person(), "allowed": allowed}


def when(moment) -> str:
    """A stored time as people read it. Times are UTC until the desk has a
    time zone setting (the SLA calendar issue brings one)."""
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def filesize(size: int) -> str:
    for unit in ("bytes", "KB", "MB"):
        if size < 1024 or unit == "MB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return ""
