"""Service levels in the portal: an admin sets up a calendar and an SLA through the forms (bad
input changes nothing), the call page shows the SLA and its due times, My work sorts by due and
badges escalations, and the timeline shows them."""

from datetime import timedelta

import sqlalchemy as sa

from switchboard.calls.services import log_call
from switchboard.db import db, utcnow
from switchboard.slm.models import Sla, SlaCalendar, Target
from switchboard.slm.sweep import run_sweep


def test_an_admin_sets_up_a_calendar_and_an_sla(login, people):
    portal = login("admin")
    assert portal.get("/admin/calendars").status_code == 200
    response = portal.post("/admin/calendars/new", {
        "name": "London office", "time_zone": "Europe/London", "day0": "09:00-12:30, 13:30-17:00",
        "day1": "09:00-17:00", "holidays": "2026-12-25 Christmas Day yearly\n2026-05-04 Bank holiday"})
    assert response.status_code == 303, response.get_data(as_text=True)
    calendar = db.session.scalar(sa.select(SlaCalendar))
    assert calendar.business_calendar().week[0] == ((540, 750), (810, 1020))
    assert [(h.day.isoformat(), h.name, h.yearly) for h in calendar.holidays] == [
        ("2026-05-04", "Bank holiday", False), ("2026-12-25", "Christmas Day", True)]

    form = {"name": "Gold", "calendar": str(calendar.id), "is_default": "y", "active": "y",
            "targets-0-response_minutes": "15", "targets-0-fix_minutes": "240",
            "fix_levels-0-percent": "50", "fix_levels-0-assigned_analyst": "y",
            "fix_levels-1-percent": "90", "fix_levels-1-group_members": "y",
            "fix_levels-1-person": str(people["admin"].id), "fix_levels-1-group": str(people["network"].id)}
    response = portal.post("/admin/slas/new", form)
    assert response.status_code == 303, response.get_data(as_text=True)
    sla = db.session.scalar(sa.select(Sla))
    assert sla.is_default and sla.calendar_id == calendar.id
    assert [(t.priority_id, t.response_seconds, t.fix_seconds) for t in sla.targets] == [(1, 900, 14400)]
    fix = [(lv.number, lv.percent, lv.notify_group_members, lv.escalation_person_id, lv.escalation_group_id)
           for lv in sla.levels if lv.target is Target.FIX]
    assert fix == [(1, 50, False, None, None), (2, 90, True, people["admin"].id, people["network"].id),
                   (3, 100, False, None, None)]
    page = portal.get(f"/admin/slas/{sla.id}").get_data(as_text=True)
    assert 'value="240"' in page and "Gold" in page


def test_bad_calendar_or_sla_input_is_refused_beside_the_field_and_changes_nothing(login):
    portal = login("admin")
    response = portal.post("/admin/calendars/new", {"name": "Mars", "time_zone": "Mars/Olympus", "day0": "09:00-17:00"})
    assert response.status_code == 422 and "IANA time zone" in response.get_data(as_text=True)
    response = portal.post("/admin/calendars/new", {"name": "Odd", "time_zone": "UTC", "day0": "17:00-09:00"})
    assert response.status_code == 422 and "after the start" in response.get_data(as_text=True)
    response = portal.post("/admin/slas/new", {"name": "Twice", "fix_levels-0-percent": "50",
                                               "fix_levels-1-percent": "50"})
    assert response.status_code == 422 and "same percentage" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SlaCalendar)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Sla)) == 0


def test_calls_show_their_sla_my_work_sorts_by_due_and_escalations_are_on_the_timeline(login, people):
    from switchboard.slm import admin

    admin.save_sla(people["admin"], "Standard", targets={3: (None, 3600), 2: (None, 600)}, is_default=True,
                   levels={Target.FIX: [admin.LevelSpec(50)]})
    db.session.commit()
    later = log_call(people["anna"], "Later", customer=people["carol"], analyst=people["anna"], priority_id=3)
    sooner = log_call(people["anna"], "Sooner", customer=people["carol"], analyst=people["anna"], priority_id=2)
    db.session.commit()
    run_sweep(utcnow() + timedelta(seconds=301))  # the P2 call passes 50% of its 10 minutes

    portal = login("anna")
    page = portal.get("/?sort=due").get_data(as_text=True)
    assert page.index("Sooner") < page.index("Later")
    assert "SLA level 1" in page
    page = portal.get("/").get_data(as_text=True)
    assert page.index("Sooner") < page.index("Later")  # P2 before P3 as well: but by priority
    page = portal.get(f"/calls/{sooner.id}").get_data(as_text=True)
    assert "Standard" in page and "Fix due" in page and "SLA level 1" in page
    assert "SLA escalation level 1: 50% of the fix target used" in page
    assert later.fix_due_at > sooner.fix_due_at


def test_an_sla_page_names_the_groups_and_customers_that_get_it(login, people):
    from switchboard.slm import admin

    sla = admin.save_sla(people["admin"], "Gold", targets={3: (None, 3600)})
    db.session.commit()
    portal = login("admin")
    response = portal.post(f"/admin/slas/{sla.id}", {"name": "Gold", "active": "y", "targets-2-fix_minutes": "60",
                                                    "groups": [str(people["network"].id)],
                                                    "customers": "carol@example.org\n"})
    assert response.status_code == 303, response.get_data(as_text=True)
    db.session.expire_all()
    assert people["network"].default_sla_id == sla.id and people["carol"].default_sla_id == sla.id
    assert log_call(people["anna"], "VPN down", customer=people["carol"]).sla == sla

    response = portal.post(f"/admin/slas/{sla.id}", {"name": "Gold", "active": "y", "customers": "nobody@example.org"})
    assert response.status_code == 422 and "Nobody has the address nobody@example.org" in response.get_data(as_text=True)
    db.session.expire_all()
    assert people["carol"].default_sla_id == sla.id  # nothing changed
