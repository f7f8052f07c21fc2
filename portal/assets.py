"""Page weight: the portal's static files under fingerprinted URLs (a content
hash in the file name) cached for a year, pages and files compressed, and
static responses that never touch the session (so they carry no
`Vary: Cookie` and no cookie)."""

import hashlib
import mimetypes
import os
import re

from flask import Flask, current_app, request, send_from_directory
from flask.sessions import SecureCookieSessionInterface
from flask_compress import Compress
from werkzeug.security import safe_join

# "desk.css" is linked as "desk.0123456789ab.css": a new version is a new URL, so the
# browser may keep each one for a year without asking again.
FINGERPRINT = re.compile(r"^(?P<stem>.+)\.(?P<hash>[0-9a-f]{12})(?P<ext>\.[A-Za-z0-9]+)$")
IMMUTABLE = "public, max-age=31536000, immutable"

# Only what the portal itself makes: pages, fragments, its stylesheet and script.
# Attachments (whatever a sender attached) go out as they are: no CPU spent on them.
COMPRESSED_TYPES = ["text/html", "text/css", "text/javascript", "application/javascript",
                    "application/json", "image/svg+xml"]

# BREACH: every page carries the CSRF token, and some echo what the request asked
# (a search). If another site could make the browser send such requests, the
# compressed size would leak the token a byte at a time. Browsers say who caused a
# request (Sec-Fetch-Site); pages are compressed only for the desk's own requests and
# for what the user typed or bookmarked. Static files hold no secret: always compressed.
PAGES_COMPRESSED_FOR = {"same-origin", "none"}

compress = Compress()


class StaticFiles:
    """Content hashes of the files in one folder, read again when a file changes
    (an edited stylesheet gets a new URL without a restart)."""

    def __init__(self, folder: str):
        self.folder = folder
        self._known: dict[str, tuple[int, int, str]] = {}

    def path(self, filename: str) -> str | None:
        path = safe_join(self.folder, filename)
        return path if path is not None and os.path.isfile(path) else None

    def fingerprint(self, filename: str) -> str | None:
        path = self.path(filename)
        if path is None:
            return None
        stat = os.stat(path)
        known = self._known.get(filename)
        if known is None or known[:2] != (stat.st_mtime_ns, stat.st_size):
            with open(path, "rb") as handle:
                digest = _digest(handle.read())
            known = self._known[filename] = (stat.st_mtime_ns, stat.st_size, digest)
        return known[2]

    def url_name(self, filename: str) -> str:
        """The name a page links to: with the content hash before the extension."""
        digest = self.fingerprint(filename)
        stem, ext = os.path.splitext(filename)
        if digest is None or not ext or FINGERPRINT.match(filename):
            return filename
        return f"{stem}.{digest}{ext}"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def init_assets(app: Flask, folder: str) -> None:
    app.extensions["static_files"] = StaticFiles(folder)
    app.url_defaults(_fingerprinted_static_urls)
    app.view_functions["static"] = serve_static
    app.session_interface = StaticFreeSessionInterface()

    app.config.setdefault("COMPRESS_MIMETYPES", COMPRESSED_TYPES)
    app.config.setdefault("COMPRESS_ALGORITHM", ["zstd", "br", "gzip", "deflate"])
    # Always: registered below behind the BREACH rule, never by the extension for every
    # response (not even if a config file says otherwise).
    app.config["COMPRESS_REGISTER"] = False
    compress.init_app(app)
    app.after_request(_compress_if_safe)


def _fingerprinted_static_urls(endpoint, values):
    # Every url_for('static', ...) in every template goes through here: no link can miss it.
    if endpoint == "static" and "filename" in values:
        values["filename"] = current_app.extensions["static_files"].url_name(values["filename"])


def serve_static(filename: str):
    """A fingerprinted name whose hash matches the file's bytes is cached for a
    year; any other name (a plain one, or a hash from before the file changed)
    gets today's file and must be revalidated."""
    files: StaticFiles = current_app.extensions["static_files"]
    match = FINGERPRINT.match(filename)
    path = files.path(match["stem"] + match["ext"]) if match else None
    if path is None:
        return send_from_directory(files.folder, filename)
    with open(path, "rb") as handle:
        data = handle.read()
    digest = _digest(data)
    response = current_app.response_class(
        data, mimetype=mimetypes.guess_type(path)[0] or "application/octet-stream"
    )
    response.set_etag(digest)
    if digest == match["hash"]:
        response.headers["Cache-Control"] = IMMUTABLE
    else:
        response.headers["Cache-Control"] = "no-cache"
    return response.make_conditional(request)


def _compress_if_safe(response):
    if request.endpoint == "static" or request.headers.get("Sec-Fetch-Site") in PAGES_COMPRESSED_FOR:
        return compress.after_request(response)
    return response


class StaticFreeSessionInterface(SecureCookieSessionInterface):
    """Flask-Login's after-request hook reads the session on every response, and
    a read session makes Flask add `Vary: Cookie`, which keeps shared caches (and
    some browsers' caches) from reusing a static file. A static file is the same
    for everyone and never changes the session: its response neither saves the
    session nor varies on it."""

    def save_session(self, app, session, response):
        if request.endpoint == "static":
            return
        super().save_session(app, session, response)
