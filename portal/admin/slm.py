"""The service level admin pages: business calendars and SLAs (targets per priority, escalation
levels and their recipients). Admins only: the admin blueprint's check covers every route here;
the services (switchboard.slm.admin) check again and validate before changing anything."""

import sqlalchemy as sa
from flask import flash, redirect, render_template, url_for
from wtforms.fields.choices import SelectChoice

from portal.admin.slm_forms import LEVEL_ROWS, CalendarForm, SlaForm
from portal.admin.views import bp
from portal.auth import current_person
from portal.forms import attempt, group_choices
from switchboard.calls.admin import priorities
from switchboard.db import db
from switchboard.errors import InvalidInput
from switchboard.people.models import Group, Person
from switchboard.people.services import analysts, groups
from switchboard.slm import admin
from switchboard.slm.admin import LevelSpec
from switchboard.slm.calendars import format_spans
from switchboard.slm.models import Target


# -- calendars ---------------------------------------------------------------------------------

@bp.get("/calendars")
def calendars():
    return render_template("admin/calendars.html", calendars=admin.calendars(), slas=admin.slas())


@bp.route("/calendars/new", methods=["GET", "POST"])
def new_calendar():
    return _calendar_page(None)


@bp.route("/calendars/<int:calendar_id>", methods=["GET", "POST"])
def calendar(calendar_id):
    return _calendar_page(admin.get_calendar(calendar_id))


def _calendar_page(calendar):
    form = CalendarForm(data=_calendar_data(calendar) if calendar is not None else None)
    saved = attempt(form, lambda: admin.save_calendar(
        current_person(), form.name.data, form.time_zone.data,
        {day: getattr(form, f"day{day}").data or "" for day in range(7)},
        admin.parse_holidays(form.holidays.data), calendar=calendar))
    if saved is not None:
        flash(f"Calendar {saved.name} saved.")
        return redirect(url_for("admin.calendars"), code=303)
    return render_template("admin/calendar.html", form=form, calendar=calendar), (422 if form.is_submitted() else 200)


def _calendar_data(calendar) -> dict:
    week = calendar.business_calendar().week
    data = {"name": calendar.name, "time_zone": calendar.time_zone,
            "holidays": "\n".join(f"{h.day.isoformat()} {h.name}{' yearly' if h.yearly else ''}".replace("  ", " ")
                                  for h in calendar.holidays)}
    data.update({f"day{d}": format_spans(week[d]) for d in range(7)})
    return data


# -- SLAs --------------------------------------------------------------------------------------

@bp.route("/slas/new", methods=["GET", "POST"])
def new_sla():
    return _sla_page(None)


@bp.route("/slas/<int:sla_id>", methods=["GET", "POST"])
def sla(sla_id):
    return _sla_page(admin.get_sla(sla_id))


def _sla_page(sla):
    rows = priorities()
    form = SlaForm(data=_sla_data(sla, rows))
    form.calendar.choices = [SelectChoice("", "24x7 (built in)")] + [
        SelectChoice(str(c.id), c.name) for c in admin.calendars()]
    people = [SelectChoice("", "— nobody —")] + [SelectChoice(str(p.id), p.display_name) for p in analysts()]
    teams = group_choices("— no group —")
    for row in list(form.response_levels) + list(form.fix_levels):
        row.form.person.choices, row.form.group.choices = people, teams
    form.groups.choices = [SelectChoice(str(g.id), g.name) for g in groups()]

    def save():
        saved = admin.save_sla(
            current_person(), form.name.data,
            calendar_id=_calendar_id(form.calendar.data),
            targets={p.id: (_seconds(row.form.response_minutes.data), _seconds(row.form.fix_minutes.data))
                     for p, row in zip(rows, form.targets)},
            levels={Target.RESPONSE: _levels(form.response_levels), Target.FIX: _levels(form.fix_levels)},
            is_default=form.is_default.data, active=form.active.data, sla=sla)
        admin.set_sla_users(current_person(), saved, [_id(g, "groups") for g in form.groups.data or []],
                            (form.customers.data or "").splitlines())
        return saved

    saved = attempt(form, save)
    if saved is not None:
        flash(f"SLA {saved.name} saved.")
        return redirect(url_for("admin.calendars"), code=303)
    return render_template("admin/sla.html", form=form, sla=sla, target_rows=list(zip(rows, form.targets))), (
        422 if form.is_submitted() else 200)


def _calendar_id(value):
    if not value:
        return None  # the built-in 24x7
    if not value.isdigit() or int(value) not in {c.id for c in admin.calendars()}:
        raise InvalidInput("Choose a calendar from the list.", field="calendar")
    return int(value)


def _seconds(minutes):
    return minutes * 60 if minutes else None


def _levels(rows) -> list[LevelSpec]:
    out = []
    for row in rows:
        f = row.form
        if f.percent.data is None:
            continue
        out.append(LevelSpec(f.percent.data, assigned_analyst=f.assigned_analyst.data,
                             group_members=f.group_members.data,
                             escalation_person_id=_id(f.person.data), escalation_group_id=_id(f.group.data)))
    return out


def _id(value, field="levels"):
    if not value:
        return None
    if not value.isdigit():
        raise InvalidInput("Choose from the list.", field=field)
    return int(value)


def _sla_data(sla, rows) -> dict:
    if sla is None:
        defaults = [{"percent": p, "assigned_analyst": True} for p in (50, 75, 90, 100)]
        return {"active": True, "targets": [{} for _ in rows],
                "response_levels": defaults + [{}] * (LEVEL_ROWS - 4),
                "fix_levels": defaults + [{}] * (LEVEL_ROWS - 4)}
    levels = {t: [{"percent": lv.percent, "assigned_analyst": lv.notify_assigned_analyst,
                   "group_members": lv.notify_group_members,
                   "person": str(lv.escalation_person_id or ""), "group": str(lv.escalation_group_id or "")}
                  for lv in sla.levels if lv.target is t] for t in Target}
    targets = []
    for priority in rows:
        target = sla.target_for(priority.id)
        targets.append({"response_minutes": target.response_seconds // 60 if target and target.response_seconds else None,
                        "fix_minutes": target.fix_seconds // 60 if target and target.fix_seconds else None})
    users = {
        "groups": [str(i) for i in db.session.scalars(sa.select(Group.id).where(Group.default_sla_id == sla.id))],
        "customers": "\n".join(db.session.scalars(
            sa.select(Person.email).where(Person.default_sla_id == sla.id).order_by(Person.email))),
    }
    return {**users, "name": sla.name, "calendar": str(sla.calendar_id or ""), "is_default": sla.is_default,
            "active": sla.active, "targets": targets,
            "response_levels": (levels[Target.RESPONSE] + [{}] * LEVEL_ROWS)[:LEVEL_ROWS],
            "fix_levels": (levels[Target.FIX] + [{}] * LEVEL_ROWS)[:LEVEL_ROWS]}
