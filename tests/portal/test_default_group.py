"""No orphan calls (issue 12, item 3): the desk-wide default group made at first start, mail
through an account without a group landing in it, the "Unassigned" view in My work, and
calls from before the desk had one gathered into it."""

import json
import re
from email.message import EmailMessage
from email.utils import make_msgid

import sqlalchemy as sa

from switchboard.calls.models import Call
from switchboard.calls.services import close_call, log_call
from switchboard.db import db
from switchboard.desk.routing import default_group
from switchboard.history.models import EntryKind, HistoryEntry
from switchboard.inbound.accounts import create_account
from switchboard.people.models import Group
from switchboard.people.services import create_group
from tests.portal.conftest import Portal


def _mail(n: int) -> bytes:
    message = EmailMessage()
    message["From"] = f"Customer {n} <customer{n}@example.org>"
    message["To"] = "help@desk.test"
    message["Subject"] = f"Printer {n} is jammed"
    message["Message-ID"] = make_msgid(domain="example.org")
    message.set_content("It jams on every page.")
    return message.as_bytes()


def _first_start(app) -> tuple[str, str]:
    """What `make run` does before it serves: the first admin (and the default group)."""
    result = app.test_cli_runner().invoke(args=["users", "ensure-admin"])
    assert result.exit_code == 0, result.output
    password = result.output.split("password:")[1].split()[0]
    return "admin@switchboard.local", password


def _counts(html: str) -> dict[str, int]:
    """Each My work section's count badge, by the section's heading id."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r'<h2 id="([\w-]+)">[^<]*<span class="count-badge">(\d+)</span>', html)}


def _stats(app) -> dict:
    result = app.test_cli_runner().invoke(args=["desk", "stats", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_calls_mailed_to_an_account_without_a_group_are_in_the_admins_my_work_as_desk_stats_counts_them(
        app, _fresh_g_per_request):
    # Issue 12: such calls belonged to nobody; the admin's and every analyst's My work said 0.
    email, password = _first_start(app)
    create_account("help", "lmtp", addresses=["help@desk.test"])  # no --default-group
    db.session.commit()
    runner = app.test_cli_runner()
    for n in range(4):
        result = runner.invoke(args=["mail", "ingest", "--account", "help", "-"], input=_mail(n))
        assert result.exit_code == 0 and "processed" in result.output, result.output

    desk_group = default_group()
    assert desk_group.name == "Service Desk"
    assert [c.assigned_group_id for c in db.session.scalars(sa.select(Call))] == [desk_group.id] * 4

    portal = Portal(app.test_client())
    assert portal.login(email, password).status_code == 302
    page = portal.get("/").get_data(as_text=True)
    counts = _counts(page)
    stats = _stats(app)["calls"]
    assert stats["open"] == 4
    assert counts["unassigned"] == stats["open"] + stats["pending"]
    assert sum(counts[s] for s in ("my-calls", "unassigned", "group-calls")) == stats["open"] + stats["pending"]
    assert "4 unassigned calls in Service Desk" in page
    assert page.count('class="item-title"') >= 4


def test_an_analyst_sees_unassigned_only_in_the_default_group_and_other_groups_queues_apart(
        app, people, login):
    anna, bob, carol = people["anna"], people["bob"], people["carol"]
    network = people["network"]
    log_call(anna, "Before any default", customer=carol)  # a call in no group: an upgrade's kind
    db.session.commit()
    assert app.test_cli_runner().invoke(args=["users", "ensure-admin"]).exit_code == 0
    assert default_group().name == "Service Desk"  # the cast's group, adopted, not made anew
    log_call(anna, "Network's", customer=carol, group=network)
    log_call(anna, "Nobody named", customer=carol)
    db.session.commit()

    anna_page = login("anna").get("/").get_data(as_text=True)  # Service Desk only
    assert _counts(anna_page)["unassigned"] == 2
    assert "Before any default" in anna_page and "Nobody named" in anna_page
    assert "Network&#39;s" not in anna_page and "Network's" not in anna_page
    bob_page = Portal(app.test_client())
    assert bob_page.login(bob.email, "bob-password-1").status_code == 302
    counts = _counts(bob_page.get("/").get_data(as_text=True))
    assert (counts["unassigned"], counts["group-calls"]) == (2, 1)  # none counted twice


def test_first_start_after_an_upgrade_gathers_calls_in_no_group_and_says_so_once(app, people):
    anna, carol = people["anna"], people["carol"]
    admin = people["admin"]
    orphan = log_call(anna, "Logged before the default group", customer=carol)
    closed = log_call(anna, "Closed long ago", customer=carol)
    close_call(closed, anna)
    taken = log_call(anna, "Anna has it", customer=carol, analyst=anna)
    db.session.commit()
    assert orphan.assigned_group_id is None

    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "ensure-admin", "--default-group", "Triage"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "An admin exists already.",
        "Default group for new calls: Triage. 1 call without a group moved into it."
        " Members added: admin@desk.test."]
    triage = db.session.scalar(sa.select(Group).where(Group.name == "Triage"))
    db.session.expire_all()
    assert db.session.get(Call, orphan.id).assigned_group_id == triage.id
    assert db.session.get(Call, closed.id).assigned_group_id is None  # closed: left as it was
    assert db.session.get(Call, taken.id).assigned_group_id is None  # it has an analyst
    assert [m.email for m in triage.members] == [admin.email]
    forward = db.session.scalar(sa.select(HistoryEntry).where(
        HistoryEntry.call_id == orphan.id, HistoryEntry.kind == EntryKind.FORWARD))
    assert forward.summary.startswith("Forwarded to Triage (the desk's default group")
    assert forward.details["to"] == {"analyst_id": None, "group_id": triage.id}

    again = runner.invoke(args=["users", "ensure-admin", "--default-group", "Other"])
    assert again.output == "An admin exists already.\n"  # scripts see what they always saw
    assert default_group().id == triage.id


def test_default_group_command_prints_sets_and_refuses_an_unknown_group(app, people):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["desk", "default-group"]).output == "(none)\n"
    refused = runner.invoke(args=["desk", "default-group", "Nowhere"])
    assert refused.exit_code != 0 and "No group named 'Nowhere'" in refused.output
    assert default_group() is None
    result = runner.invoke(args=["desk", "default-group", "Network"])
    assert result.exit_code == 0 and result.output == "Default group for new calls: Network.\n"
    made = runner.invoke(args=["desk", "default-group", "First Line", "--create"])
    assert made.exit_code == 0, made.output
    assert runner.invoke(args=["desk", "default-group"]).output == "First Line\n"
    call = log_call(people["anna"], "Nobody named", customer=people["carol"])
    assert call.assigned_group.name == "First Line"


def test_admin_names_the_default_group_on_the_groups_page_and_bad_input_changes_nothing(
        app, people, login):
    portal = login("admin")
    network = people["network"]
    page = portal.get("/admin/groups").get_data(as_text=True)
    assert "Where new calls go" in page and "Default group for new calls" in page

    refused = portal.post("/admin/groups/default", {"group": "999999"})
    assert refused.status_code == 422 and default_group() is None
    refused = portal.post("/admin/groups/default", {"group": ""})
    assert refused.status_code == 422 and default_group() is None

    orphan = log_call(people["anna"], "No group yet", customer=people["carol"])
    db.session.commit()
    done = portal.post("/admin/groups/default", {"group": str(network.id)}, follow_redirects=True)
    html = done.get_data(as_text=True)
    assert done.status_code == 200 and "now go to Network" in html and "1 call without a group" in html
    db.session.expire_all()
    assert default_group().id == network.id
    assert db.session.get(Call, orphan.id).assigned_group_id == network.id
    assert "Default for new calls" in portal.get("/admin/groups").get_data(as_text=True)


def test_a_desk_without_a_default_group_shows_calls_in_no_group_to_admins(app, people, login):
    log_call(people["anna"], "Lost call", customer=people["carol"])
    db.session.commit()
    page = login("admin").get("/").get_data(as_text=True)
    assert _counts(page)["unassigned"] == 1 and "Lost call" in page


def test_an_inactive_group_cannot_be_the_default(app, people):
    closed_down = create_group("Closed down")
    closed_down.active = False
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["desk", "default-group", "Closed down"])
    assert result.exit_code != 0 and "not active" in result.output
    assert default_group() is None


def test_the_demo_loads_after_first_start_made_service_desk_and_joins_it(app):
    # make run's first start makes "Service Desk"; `desk demo` then refused to make it again.
    runner = app.test_cli_runner()
    assert runner.invoke(args=["users", "ensure-admin"]).exit_code == 0
    result = runner.invoke(args=["desk", "demo"])
    assert result.exit_code == 0, result.output
    desk_group = default_group()
    assert desk_group.name == "Service Desk"
    assert {m.email for m in desk_group.members} == {
        "admin@switchboard.local", "sam.ortiz@demo.switchboard.local", "priya.nair@demo.switchboard.local"}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Group)) == 2
