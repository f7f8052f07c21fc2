"""Huge numbers in URLs: every `<int:...>` route and every `?page=` answers
404, never a 500 (an OverflowError from the database driver)."""

import re

from werkzeug.routing import AnyConverter, IntegerConverter

# Beyond SQLite's 64-bit integers, just beyond them, and just beyond an INTEGER id.
HUGE = ["99999999999999999999999", str(2**63), str(2**31)]
LISTS = ["/calls/", "/requests/", "/admin/people", "/admin/mail/inbound", "/admin/mail/outbox"]


def _urls_with(app, number: str):
    """Every rule with an int converter, its int parts set to `number`, the others to something valid."""
    for rule in app.url_map.iter_rules():
        converters = rule._converters
        if not any(isinstance(c, IntegerConverter) for c in converters.values()):
            continue
        values = {
            name: number if isinstance(c, IntegerConverter) else sorted(c.items)[0] if isinstance(c, AnyConverter) else "x"
            for name, c in converters.items()
        }
        yield rule, re.sub(r"<(?:[^>]*:)?(\w+)>", lambda m: values[m.group(1)], rule.rule)


def test_huge_numbers_in_any_url_are_not_found(app, login, people):
    portal = login("admin")  # the one who may see every page
    checked = 0
    for number in HUGE:
        for rule, url in _urls_with(app, number):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                response = portal.get(url) if method == "GET" else portal.post(url, {})
                assert response.status_code == 404, (method, url, response.status_code)
                checked += 1
    assert checked >= 3 * 30  # every int route, not a handful


def test_page_numbers_that_cannot_exist_are_not_found(login, people):
    portal = login("admin")
    for url in LISTS:
        assert portal.get(url).status_code == 200, url
        assert portal.get(url + "?page=").status_code == 200, url
        assert portal.get(url + "?page=2").status_code == 200, url  # past the end: an empty page
        for bad in [*HUGE, "9" * 5000, "0", "-1", "abc", "1.5", "١"]:  # the last: an Arabic-Indic one
            response = portal.get(f"{url}?page={bad}")
            assert response.status_code == 404, (url, bad[:30], response.status_code)
            assert "There is nothing here." in response.get_data(as_text=True)
