"""Every route in app.url_map, GET and POST, as anonymous, customer, analyst
and admin, against the table below. A route missing from the table fails the
test by name: a new route is private until someone says who may use it.

POSTs carry a valid CSRF token wherever the role could have loaded the form,
so what is checked here is authorization, not CSRF (one test checks that a
POST without a token is refused). URL variables are filled with rows the test
creates; `any(...)` parts are tried with every value they accept."""

import re
from itertools import product

import pytest
import sqlalchemy as sa
from werkzeug.routing import AnyConverter

from switchboard.calls import customer_link
from switchboard.calls.services import log_call
from switchboard.db import db
from switchboard.history.models import Attachment
from switchboard.history.services import NewAttachment
from switchboard.inbound.accounts import create_account
from switchboard.inbound.process import process_pending
from switchboard.inbound.store import store_message
from switchboard.outbox.models import OutboxMessage
from switchboard.outbox.servers import add_server
from switchboard.people.models import Group
from switchboard.people.services import create_person
from switchboard.requests.models import TaskKind
from switchboard.requests.services import TaskSpec, create_request
from switchboard.slm import admin as slm_admin
from tests.portal.conftest import PASSWORDS, TOKEN, Portal

ROLES = ("anonymous", "customer", "analyst", "admin")

# What a role gets:
OK = "allowed"  # past authorization: a page, a redirect elsewhere, or the form's own refusal (400/409/422)
LOGIN = "login redirect"  # 302 to /login?next=...
DENIED = "403"

CSRF_REFUSAL = re.compile(r"The CSRF (session )?token is (missing|invalid)")

PRIVATE = (LOGIN, LOGIN, OK, OK)  # analysts' pages
ADMIN_ONLY = (LOGIN, LOGIN, DENIED, OK)
PUBLIC = (OK, OK, OK, OK)

# (rule, method) -> (anonymous, customer, analyst, admin), or {value of the rule's any(...)
# part: that tuple, "*": the others}. A customer "session" is one whose person is no
# longer staff: customers cannot log in to the portal.
EXPECTED = {
    ("/static/<path:filename>", "GET"): PUBLIC,
    ("/login", "GET"): PUBLIC,
    ("/login", "POST"): PUBLIC,
    # A customer's read-only page of their call, opened by the signed link in their mail
    # (tests/portal/test_customer_link.py: what it shows, and the same 404 for any bad link).
    ("/follow/<token>", "GET"): PUBLIC,
    ("/logout", "POST"): PRIVATE,
    ("/", "GET"): PRIVATE,
    ("/me/settings", "GET"): PRIVATE,
    ("/me/settings", "POST"): PRIVATE,
    ("/attachments/<int:attachment_id>", "GET"): PRIVATE,
    ("/calls/", "GET"): PRIVATE,
    ("/calls/new", "GET"): PRIVATE,
    ("/calls/new", "POST"): PRIVATE,
    ("/calls/<int:call_id>", "GET"): PRIVATE,
    ("/calls/<int:call_id>/timeline", "GET"): PRIVATE,  # the "Older entries" control's page
    ("/calls/<int:call_id>/<any(update, forward, resolve, hold, resume, priority, close, reopen, mail):action>",
     "POST"): PRIVATE,
    # An action's form, loaded when its <details> on the call's page is opened.
    ("/calls/<int:call_id>/<any(update, forward, resolve, hold, resume, priority, close, reopen, mail):action>/form",
     "GET"): PRIVATE,
    ("/requests/", "GET"): PRIVATE,
    ("/requests/new", "GET"): PRIVATE,
    ("/requests/new", "POST"): PRIVATE,
    ("/requests/<int:request_id>", "GET"): PRIVATE,
    ("/requests/<int:request_id>/note", "POST"): PRIVATE,
    ("/requests/<int:request_id>/timeline", "GET"): PRIVATE,  # the "Older entries" control's page
    ("/requests/tasks/<int:task_id>/timeline", "GET"): PRIVATE,  # the same for a task's timeline
    # A task action's form, loaded when its <details> is opened: refused as its POST is.
    ("/requests/tasks/<int:task_id>/<any(approve, reject, complete, forward, note):action>/form", "GET"): {
        "approve": (LOGIN, LOGIN, OK, DENIED), "reject": (LOGIN, LOGIN, OK, DENIED), "*": PRIVATE},
    # Only the task's approver decides an approval (the test makes the analyst it): not even an admin.
    ("/requests/tasks/<int:task_id>/<any(approve, reject, complete, forward, note):action>", "POST"): {
        "approve": (LOGIN, LOGIN, OK, DENIED), "*": PRIVATE},
    ("/admin/", "GET"): ADMIN_ONLY,
    ("/admin/people", "GET"): ADMIN_ONLY,
    ("/admin/people/new", "GET"): ADMIN_ONLY,
    ("/admin/people/new", "POST"): ADMIN_ONLY,
    ("/admin/people/<int:person_id>/<any(deactivate, reactivate):change>", "POST"): ADMIN_ONLY,
    ("/admin/people/<int:person_id>/mail/<any(essential, all):choice>", "POST"): ADMIN_ONLY,
    ("/admin/groups", "GET"): ADMIN_ONLY,
    ("/admin/groups", "POST"): ADMIN_ONLY,
    ("/admin/groups/<int:group_id>", "GET"): ADMIN_ONLY,
    ("/admin/groups/<int:group_id>", "POST"): ADMIN_ONLY,
    ("/admin/groups/<int:group_id>/members/<int:person_id>/remove", "POST"): ADMIN_ONLY,
    ("/admin/groups/default", "POST"): ADMIN_ONLY,
    ("/admin/priorities", "GET"): ADMIN_ONLY,
    ("/admin/priorities/<int:priority_id>", "POST"): ADMIN_ONLY,
    ("/admin/health", "GET"): ADMIN_ONLY,
    ("/admin/calendars", "GET"): ADMIN_ONLY,
    ("/admin/calendars/new", "GET"): ADMIN_ONLY,
    ("/admin/calendars/new", "POST"): ADMIN_ONLY,
    ("/admin/calendars/<int:calendar_id>", "GET"): ADMIN_ONLY,
    ("/admin/calendars/<int:calendar_id>", "POST"): ADMIN_ONLY,
    ("/admin/slas/new", "GET"): ADMIN_ONLY,
    ("/admin/slas/new", "POST"): ADMIN_ONLY,
    ("/admin/slas/<int:sla_id>", "GET"): ADMIN_ONLY,
    ("/admin/slas/<int:sla_id>", "POST"): ADMIN_ONLY,
    ("/admin/mail/accounts", "GET"): ADMIN_ONLY,
    ("/admin/mail/accounts/new", "GET"): ADMIN_ONLY,
    ("/admin/mail/accounts/new", "POST"): ADMIN_ONLY,
    ("/admin/mail/accounts/<int:account_id>", "GET"): ADMIN_ONLY,
    ("/admin/mail/accounts/<int:account_id>", "POST"): ADMIN_ONLY,
    ("/admin/mail/accounts/<int:account_id>/<any(deactivate, reactivate):change>", "POST"): ADMIN_ONLY,
    ("/admin/mail/accounts/<int:account_id>/test", "POST"): ADMIN_ONLY,
    ("/admin/mail/accounts/<int:account_id>/oauth2", "GET"): ADMIN_ONLY,
    ("/admin/mail/accounts/<int:account_id>/oauth2", "POST"): ADMIN_ONLY,
    ("/admin/mail/accounts/<int:account_id>/oauth2/connect", "POST"): ADMIN_ONLY,
    ("/admin/mail/servers/<int:server_id>/oauth2", "GET"): ADMIN_ONLY,
    ("/admin/mail/servers/<int:server_id>/oauth2", "POST"): ADMIN_ONLY,
    ("/admin/mail/servers/<int:server_id>/oauth2/connect", "POST"): ADMIN_ONLY,
    ("/admin/mail/oauth2/callback", "GET"): ADMIN_ONLY,
    ("/admin/mail/inbound", "GET"): ADMIN_ONLY,
    ("/admin/mail/inbound/<int:inbound_id>", "GET"): ADMIN_ONLY,
    ("/admin/mail/inbound/<int:inbound_id>/files/<int:number>", "GET"): ADMIN_ONLY,
    ("/admin/mail/inbound/<int:inbound_id>/html", "GET"): ADMIN_ONLY,
    ("/admin/mail/inbound/<int:inbound_id>/raw", "GET"): ADMIN_ONLY,
    ("/admin/mail/inbound/<int:inbound_id>/reprocess", "POST"): ADMIN_ONLY,
    ("/admin/mail/notifications", "GET"): ADMIN_ONLY,
    ("/admin/mail/notifications", "POST"): ADMIN_ONLY,
    ("/admin/mail/notifications/<int:number>/reset", "POST"): ADMIN_ONLY,
    ("/admin/mail/notifications/limits", "POST"): ADMIN_ONLY,
    ("/admin/mail/outbox", "GET"): ADMIN_ONLY,
    ("/admin/mail/outbox/<int:outbox_id>", "GET"): ADMIN_ONLY,
    ("/admin/mail/outbox/<int:outbox_id>/<any(requeue, cancel):change>", "POST"): ADMIN_ONLY,
    ("/admin/mail/servers", "GET"): ADMIN_ONLY,
    ("/admin/mail/servers/new", "GET"): ADMIN_ONLY,
    ("/admin/mail/servers/new", "POST"): ADMIN_ONLY,
    ("/admin/mail/servers/<int:server_id>", "GET"): ADMIN_ONLY,
    ("/admin/mail/servers/<int:server_id>", "POST"): ADMIN_ONLY,
    ("/admin/mail/servers/<int:server_id>/<any(deactivate, reactivate):change>", "POST"): ADMIN_ONLY,
    ("/admin/mail/servers/<int:server_id>/test", "POST"): ADMIN_ONLY,
    ("/admin/mail/templates", "GET"): ADMIN_ONLY,
    ("/admin/mail/templates/<int:number>", "GET"): ADMIN_ONLY,
    ("/admin/mail/templates/<int:number>", "POST"): ADMIN_ONLY,
    ("/admin/mail/templates/<int:number>/preview", "POST"): ADMIN_ONLY,
    ("/admin/mail/templates/<int:number>/preview.html", "GET"): ADMIN_ONLY,
    ("/admin/mail/templates/<int:number>/preview.html", "POST"): ADMIN_ONLY,
    ("/admin/mail/templates/<int:number>/reset", "POST"): ADMIN_ONLY,
}

MAIL_WITH_A_FILE = (
    b"From: Carol Customer <carol@example.org>\r\nTo: help@desk.test\r\nSubject: Log call: scanner\r\n"
    b"Message-ID: <routes-1@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/html\r\n\r\n<p>The scanner is broken.</p>\r\n"
    b"--b\r\nContent-Type: text/plain; name=log.txt\r\nContent-Disposition: attachment; filename=log.txt\r\n\r\n"
    b"scanner log\r\n--b--\r\n"
)


def _methods(rule) -> list[str]:
    return sorted(rule.methods & {"GET", "POST"})


def test_every_route_is_in_the_table(app):
    routes = {(rule.rule, method) for rule in app.url_map.iter_rules() for method in _methods(rule)}
    missing = sorted(routes - EXPECTED.keys())
    assert not missing, (
        "Routes missing from EXPECTED in tests/security/test_routes.py (say what anonymous, customer, "
        "analyst and admin get):\n" + "\n".join(f"  {method} {rule}" for rule, method in missing))
    gone = sorted(EXPECTED.keys() - routes)
    assert not gone, "Rows in EXPECTED for routes that no longer exist:\n" + "\n".join(
        f"  {method} {rule}" for rule, method in gone)


@pytest.fixture
def rows(people):
    """One row of every kind a URL can name, and the actors' ids."""
    cora = create_person("cora@desk.test", "Cora Formerly-Analyst", analyst=True, customer=True,
                         password="cora-password-1")
    target = create_person("tess@example.org", "Tess Target")  # the admin actions' victim
    call = log_call(people["anna"], "Mail slow", customer=people["carol"],
                    attachments=[NewAttachment("trace.txt", "text/plain", b"trace")])
    request = create_request(people["anna"], "New laptop", requester=people["carol"], tasks=[
        # Her own approval: who else may decide one is tests/requests' business, not the route table's.
        TaskSpec(TaskKind.APPROVAL, "Approve it", approver=people["anna"]),
        TaskSpec(TaskKind.ACTION, "Buy it", stage=2, analyst=people["anna"])])
    account = create_account("help", "lmtp", addresses=["help@desk.test"])
    server = add_server("sink", "127.0.0.1", port=9, security="none", from_address="desk@desk.test",
                        timeout_seconds=1)
    calendar = slm_admin.save_calendar(people["admin"], "Office", "UTC", {0: "09:00-17:00"})
    sla = slm_admin.save_sla(people["admin"], "Standard", calendar_id=calendar.id)
    db.session.flush()
    inbound = store_message(MAIL_WITH_A_FILE, source="pipe", account=account)
    db.session.commit()
    process_pending()
    db.session.commit()
    outbox = db.session.scalar(sa.select(OutboxMessage.id).order_by(OutboxMessage.id))
    assert outbox is not None, "no mail queued: the outbox pages would go untested"
    attachment = db.session.scalar(sa.select(Attachment).where(Attachment.filename == "trace.txt"))
    return {
        "attachment_id": attachment.id, "call_id": call.id, "request_id": request.id,
        "task_id": request.tasks[0].id, "person_id": target.id, "group_id": people["network"].id,
        "priority_id": 3, "account_id": account.id, "inbound_id": inbound.inbound_id, "number": 1,
        "outbox_id": outbox, "server_id": server.id, "filename": "desk.css", "cora": cora,
        "token": customer_link.make_token(call.id, people["carol"].id),
        "calendar_id": calendar.id, "sla_id": sla.id,
    }


def _urls(rule, values: dict) -> list[tuple[str, set]]:
    """The rule's URL for every value of its any(...) parts (with those values), the other
    parts from `values`."""
    names = list(rule._converters)
    options = [sorted(c.items) if isinstance(c, AnyConverter) else [values[name]]
               for name, c in rule._converters.items()]
    urls = []
    for chosen in product(*options):
        filled = dict(zip(names, map(str, chosen)))
        url = re.sub(r"<(?:[^>]*:)?(\w+)>", lambda m: filled[m.group(1)], rule.rule)
        urls.append((url, {filled[name] for name, c in rule._converters.items() if isinstance(c, AnyConverter)}))
    return urls


def _session(app, role: str, people, rows) -> Portal:
    portal = Portal(app.test_client())
    if role in ("analyst", "admin"):
        name = "anna" if role == "analyst" else "admin"
        assert portal.login(people[name].email, PASSWORDS[name]).status_code == 302
    elif role == "customer":
        # Logged in while an analyst, then made a plain customer: the session is all they have.
        assert portal.login("cora@desk.test", "cora-password-1").status_code == 302
        rows["cora"].is_analyst = False
        db.session.commit()
    return portal


def _token(portal: Portal) -> str:
    """The CSRF token this session's pages carry (the login page's for one not logged in)."""
    html = portal.get("/", follow_redirects=True).get_data(as_text=True)
    return TOKEN.search(html).group(1)


def _outcome(response) -> str:
    status, location = response.status_code, response.headers.get("Location", "")
    if status in (301, 302, 303) and location.startswith("/login?next="):
        return LOGIN
    if status == 403:
        return DENIED
    if status in (400, 409, 422) and not CSRF_REFUSAL.search(response.get_data(as_text=True)):
        return OK  # the role got in; the (empty) form or the record's state said no
    if status < 400:
        return OK
    return str(status)


def test_every_route_answers_each_role_as_the_table_says(app, people, rows, _fresh_g_per_request):
    rules = sorted(app.url_map.iter_rules(), key=lambda r: (r.rule == "/logout", r.rule))  # logout last
    wrong, tried = [], 0
    for index, role in enumerate(ROLES):
        portal = _session(app, role, people, rows)
        token = _token(portal)
        for rule in rules:
            for method in _methods(rule):
                expected = EXPECTED.get((rule.rule, method))
                assert expected is not None, f"{method} {rule.rule} is missing from EXPECTED (see the test above)"
                for url, choices in _urls(rule, rows):
                    row = expected
                    if isinstance(row, dict):
                        row = next((row[c] for c in choices if c in row), row["*"])
                    if method == "GET":
                        response = portal.client.get(url)
                    else:
                        response = portal.client.post(url, data={"csrf_token": token})
                    db.session.rollback()  # a fresh view of what the request committed
                    tried += 1
                    seen = _outcome(response)
                    if seen != row[index]:
                        wrong.append(f"{role:9} {method:4} {url}: expected {row[index]}, got {seen}")
    assert not wrong, "\n" + "\n".join(wrong)
    assert tried > 4 * 80


def test_a_post_without_a_csrf_token_is_refused_and_changes_nothing(app, people, login):
    portal = login("admin")
    before = db.session.scalar(sa.select(sa.func.count()).select_from(Group))
    response = portal.client.post("/admin/groups", data={"name": "Forged group"})
    assert response.status_code == 400 and "CSRF token is missing" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Group)) == before
    assert portal.post("/admin/groups", {"name": "Real group"}).status_code in (302, 303)  # with the token
