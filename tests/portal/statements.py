"""Counting the SQL statements a portal page or action sends (the statement-bound tests of
test_sql_per_page.py and test_sql_per_request.py)."""

from tests.statements import statements


def counted(portal, method: str, url: str, data=None) -> tuple[int, str]:
    """Serves one page (GET; an htmx request for a timeline's older page) or htmx action
    (POST), which must answer 200: the statements it sent and its HTML."""
    with statements() as sent:
        if method == "GET":
            response = portal.get(url, headers={"HX-Request": "true"} if "/timeline" in url else {})
        else:
            response = portal.post(url, data, htmx=True)
    assert response.status_code == 200, (url, response.status_code, response.get_data(as_text=True)[:500])
    return len(sent), response.get_data(as_text=True)
