"""How the portal's static files and pages travel (issue 12, page weight):
fingerprinted URLs cached for a year, no `Vary: Cookie` on files, pages
compressed only for requests the desk's own pages or the user made (BREACH),
attachments never compressed. The bytes a browser actually transfers are
measured in tests/portal/test_screens.py."""

import gzip
import re

from portal.assets import IMMUTABLE, StaticFiles
from switchboard.calls.services import log_call
from switchboard.db import db
from switchboard.history.services import NewAttachment

STATIC_LINK = re.compile(r'(?:href|src)="(/static/[^"]+)"')
GZIP = {"Accept-Encoding": "gzip"}


def _static_links(html: str) -> list[str]:
    return STATIC_LINK.findall(html)


def test_static_files_are_linked_by_content_hash_and_cached_for_a_year(client, login):
    anonymous = _static_links(client.get("/login").get_data(as_text=True))
    portal = login("admin")  # a session Flask-Login reads on every response
    signed_in = _static_links(portal.get("/calls/").get_data(as_text=True))
    assert anonymous == signed_in and len(signed_in) == 3
    for url in signed_in:
        assert re.search(r"\.[0-9a-f]{12}\.(css|js|svg)$", url), url
        response = portal.get(url, headers={**GZIP, "Sec-Fetch-Site": "same-origin"})
        assert response.status_code == 200, url
        assert response.headers["Cache-Control"] == IMMUTABLE, url
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_vary_cookie_stays_off_static_files_though_flask_login_reads_the_session(login):
    """Flask-Login's after-request hook reads the session on every response, and Flask
    answers a read session with `Vary: Cookie` (every static file had it): a file that is
    the same for everyone neither varies on the session nor sets it. Pages still do."""
    portal = login("admin")
    page = portal.get("/calls/")
    assert "cookie" in page.headers.get("Vary", "").lower()
    for url in _static_links(page.get_data(as_text=True)) + ["/static/desk.css"]:
        response = portal.get(url)
        assert response.status_code == 200, url
        assert "cookie" not in response.headers.get("Vary", "").lower(), url
        assert "Set-Cookie" not in response.headers, url


def test_static_files_are_compressed_and_pages_stay_no_store(client):
    for url in _static_links(client.get("/login").get_data(as_text=True)):
        response = client.get(url, headers={**GZIP, "Sec-Fetch-Site": "cross-site"})
        if url.endswith(".svg"):
            continue  # 208 bytes: below the size worth compressing
        assert response.headers["Content-Encoding"] == "gzip", url
        assert len(response.data) < len(gzip.decompress(response.data)) / 2, url
    page = client.get("/login", headers={**GZIP, "Sec-Fetch-Site": "none"})
    assert page.headers["Content-Encoding"] == "gzip"
    assert b"this portal is for analysts" in gzip.decompress(page.data)
    assert page.headers["Cache-Control"] == "no-store"


def test_breach_pages_are_not_compressed_for_requests_another_site_caused(client, login):
    """Every page carries the CSRF token and the calls list echoes its search: compressed,
    its size would tell a site that makes the browser send searches the token, a byte at
    a time. Only requests from the desk's own pages, or typed and bookmarked ones, get
    compressed pages."""
    portal = login("admin")
    search = "/calls/?q=" + "csrf_token" * 20
    for site in ("cross-site", "same-site", None):
        headers = {**GZIP, **({"Sec-Fetch-Site": site} if site else {})}
        response = portal.get(search, headers=headers)
        assert response.status_code == 200 and "Content-Encoding" not in response.headers, site
    same_origin = portal.get(search, headers={**GZIP, "Sec-Fetch-Site": "same-origin"})
    assert same_origin.headers["Content-Encoding"] == "gzip"


def test_an_edited_static_file_gets_a_new_url_and_its_old_url_is_revalidated(app, client, tmp_path):
    folder = tmp_path / "static"
    folder.mkdir()
    (folder / "desk.css").write_text("body { color: black }\n" * 40)
    kept = app.extensions["static_files"]
    app.extensions["static_files"] = StaticFiles(str(folder))
    try:
        with app.test_request_context():
            from flask import url_for

            before = url_for("static", filename="desk.css")
            (folder / "desk.css").write_text("body { color: navy }\n" * 40)
            after = url_for("static", filename="desk.css")
        assert before != after and re.fullmatch(r"/static/desk\.[0-9a-f]{12}\.css", after)
        fresh = client.get(after)
        assert fresh.headers["Cache-Control"] == IMMUTABLE and b"navy" in fresh.data
        # A page from before the edit still gets a stylesheet, today's, but not for a year.
        stale = client.get(before)
        assert stale.status_code == 200 and b"navy" in stale.data
        assert stale.headers["Cache-Control"] == "no-cache"
        plain = client.get("/static/desk.css")
        assert plain.headers["Cache-Control"] == "no-cache" and b"navy" in plain.data
        assert client.get("/static/gone.0123456789ab.css").status_code == 404
        assert client.get("/static/..%2f..%2fwsgi.py").status_code == 404
    finally:
        app.extensions["static_files"] = kept


def test_attachments_are_sent_as_they_are_never_compressed(login, people):
    text = b"a log line that repeats\n" * 2000
    call = log_call(people["anna"], "Scanner", customer=people["carol"],
                    attachments=[NewAttachment("scan.log", "text/plain", text)])
    db.session.commit()
    portal = login("admin")
    html = portal.get(f"/calls/{call.id}").get_data(as_text=True)
    url = re.search(r'href="(/attachments/\d+)"', html).group(1)
    response = portal.get(url, headers={**GZIP, "Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 200 and "Content-Encoding" not in response.headers
    assert response.data == text
