"""What admins set up for service levels: calendars (zone, weekly hours, holidays) and SLAs
(calendar, targets per priority, escalation levels with their recipients, who gets the SLA by
default). Each checks the admin permission, validates everything before changing anything,
and flushes; the caller commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa

from switchboard.calls.models import Priority
from switchboard.db import db, forget_transaction_cache
from switchboard.errors import InvalidInput, NotFound
from switchboard.permissions import require
from switchboard.slm.calendars import BusinessCalendar, CalendarError, parse_spans, time_zone
from switchboard.slm.models import CalendarHoliday, CalendarHours, Sla, SlaCalendar, SlaLevel, SlaTarget, Target
from switchboard.slm.plans import written

NAME_MAX = 80
MAX_TARGET_SECONDS = 366 * 24 * 3600  # a year: past that a promise is no promise
MAX_LEVELS = 10  # per target, the breach included
MAX_HOLIDAYS = 500


@dataclass(frozen=True)
class LevelSpec:
    """One level as an admin describes it."""

    percent: int
    assigned_analyst: bool = True
    group_members: bool = False
    escalation_person_id: int | None = None
    escalation_group_id: int | None = None


def calendars() -> list[SlaCalendar]:
    return db.session.scalars(sa.select(SlaCalendar).order_by(SlaCalendar.name)).all()


def slas() -> list[Sla]:
    return db.session.scalars(sa.select(Sla).order_by(Sla.name)).all()


def get_calendar(calendar_id: int) -> SlaCalendar:
    calendar = db.session.get(SlaCalendar, calendar_id)
    if calendar is None:
        raise NotFound(f"There is no calendar {calendar_id}.")
    return calendar


def get_sla(sla_id: int) -> Sla:
    sla = db.session.get(Sla, sla_id)
    if sla is None:
        raise NotFound(f"There is no SLA {sla_id}.")
    return sla


def save_calendar(actor, name: str, zone: str, week: dict[int, str], holidays=(),
                  calendar: SlaCalendar | None = None) -> SlaCalendar:
    """`week`: weekday (Monday = 0) -> '09:00-12:30, 13:30-17:00'; `holidays`: (date, name,
    yearly) triples. Creates the calendar, or replaces what `calendar` says."""
    require(actor, "admin")
    name = _name(name, SlaCalendar, calendar)
    try:
        time_zone(zone)
        spans = {day: parse_spans(week.get(day, "")) for day in range(7)}
        BusinessCalendar(zone=zone.strip(), week=tuple(spans[d] for d in range(7)))
    except CalendarError as exc:
        raise InvalidInput(str(exc), field="hours" if "zone" not in str(exc) else "time_zone") from None
    holidays = list(holidays)
    if len(holidays) > MAX_HOLIDAYS:
        raise InvalidInput(f"At most {MAX_HOLIDAYS} holidays per calendar.", field="holidays")
    days = [d for d, _, _ in holidays]
    if len(set(days)) != len(days):
        raise InvalidInput("A day is listed twice among the holidays.", field="holidays")
    if calendar is None:
        calendar = SlaCalendar()
        db.session.add(calendar)
    calendar.name, calendar.time_zone = name, zone.strip()
    calendar.hours = [CalendarHours(weekday=day, start_minute=s, end_minute=e)
                      for day in range(7) for s, e in spans[day]]
    calendar.holidays = [CalendarHoliday(day=d, name=(label or "")[:80], yearly=bool(yearly))
                         for d, label, yearly in holidays]
    db.session.flush()
    written()  # the SLAs on this calendar: in force here at commit, elsewhere within plans.PLAN_SECONDS
    return calendar


def parse_holidays(text: str) -> list[tuple[date, str, bool]]:
    """One a line: '2026-12-25 Christmas Day yearly' (the name and 'yearly' are optional)."""
    out = []
    for number, line in enumerate((text or "").splitlines(), 1):
        words = line.split()
        if not words:
            continue
        try:
            day = date.fromisoformat(words[0])
        except ValueError:
            raise InvalidInput(f"Line {number}: start with a date as YYYY-MM-DD.", field="holidays") from None
        yearly = len(words) > 1 and words[-1].lower() == "yearly"
        out.append((day, " ".join(words[1:-1] if yearly else words[1:]), yearly))
    return out


def save_sla(actor, name: str, *, calendar_id: int | None = None, targets: dict[int, tuple] | None = None,
             levels: dict[Target, list[LevelSpec]] | None = None, is_default: bool = False,
             active: bool = True, sla: Sla | None = None) -> Sla:
    """`targets`: priority id -> (response seconds, fix seconds), None for no target;
    `levels`: per target, the escalation levels below 100% and, optionally, the breach (100%)
    to set its recipients (when left out it goes to the assigned analyst). Levels are numbered
    in the order of their percentages."""
    require(actor, "admin")
    name = _name(name, Sla, sla)
    if calendar_id is not None:
        get_calendar(calendar_id)
    priorities = set(db.session.scalars(sa.select(Priority.id)))
    targets = targets or {}
    for priority_id, pair in targets.items():
        if priority_id not in priorities:
            raise InvalidInput(f"There is no priority {priority_id}.", field="targets")
        for seconds in pair:
            if seconds is not None and not 0 < seconds <= MAX_TARGET_SECONDS:
                raise InvalidInput("A target is between one second and a year of business time.", field="targets")
    levels = levels if levels is not None else {t: [] for t in Target}
    built = []
    for target in Target:
        specs = sorted(levels.get(target, []), key=lambda s: s.percent)
        percents = [s.percent for s in specs]
        if any(not 0 < p <= 100 for p in percents):
            raise InvalidInput("A level is at 1 to 100% of its target.", field="levels")
        if len(set(percents)) != len(percents):
            raise InvalidInput(f"Two {target.value} levels at the same percentage.", field="levels")
        if not percents or percents[-1] != 100:
            specs.append(LevelSpec(100))  # the breach is always there
        if len(specs) > MAX_LEVELS:
            raise InvalidInput(f"At most {MAX_LEVELS} levels per target.", field="levels")
        for number, spec in enumerate(specs, 1):
            _check_recipients(spec)
            built.append(SlaLevel(target=target, number=number, percent=spec.percent,
                                  notify_assigned_analyst=spec.assigned_analyst,
                                  notify_group_members=spec.group_members,
                                  escalation_person_id=spec.escalation_person_id,
                                  escalation_group_id=spec.escalation_group_id))
    if is_default:
        db.session.execute(sa.update(Sla).where(Sla.is_default).values(is_default=False))
    if sla is None:
        sla = Sla(name=name)
        db.session.add(sla)
    else:
        sla.levels = []
        sla.targets = []
        db.session.flush()  # the old rows go before new ones take their unique numbers
    sla.name, sla.calendar_id, sla.is_default, sla.active = name, calendar_id, is_default, active
    sla.targets = [SlaTarget(priority_id=p, response_seconds=r, fix_seconds=f)
                   for p, (r, f) in sorted(targets.items()) if r is not None or f is not None]
    sla.levels = built
    db.session.flush()
    forget_transaction_cache()  # the desk's default SLA may have changed
    written()  # its terms: in force here at commit, elsewhere within plans.PLAN_SECONDS
    return sla


def set_default_sla(actor, owner, sla: Sla | None) -> None:
    """The SLA for a customer's calls (a Person) or a group's (a Group); None: no default."""
    require(actor, "admin")
    owner.default_sla_id = sla.id if sla is not None else None
    db.session.flush()


MAX_CUSTOMERS = 1000  # listed on one SLA's page


def set_sla_users(actor, sla: Sla, group_ids, customer_emails) -> None:
    """Makes `sla` the default of exactly these groups and customers: those listed get it,
    those that had it and are no longer listed get none (the desk's default then applies)."""
    from switchboard.people.models import Group, Person
    from switchboard.people.services import find_person

    require(actor, "admin")
    emails = [e.strip() for e in customer_emails if e and e.strip()]
    if len(emails) > MAX_CUSTOMERS:
        raise InvalidInput(f"At most {MAX_CUSTOMERS} customers here; give the rest a group's SLA.", field="customers")
    customers = []
    for email in emails:
        person = find_person(email)
        if person is None:
            raise InvalidInput(f"Nobody has the address {email}.", field="customers")
        customers.append(person)
    groups = [db.session.get(Group, gid) for gid in set(group_ids)]
    if any(g is None for g in groups):
        raise InvalidInput("There is no such group.", field="groups")
    for model, chosen in ((Group, groups), (Person, customers)):
        db.session.execute(sa.update(model).where(model.default_sla_id == sla.id).values(default_sla_id=None))
        for owner in chosen:
            owner.default_sla_id = sla.id
    db.session.flush()


def _check_recipients(spec: LevelSpec) -> None:
    from switchboard.people.models import Group, Person

    if spec.escalation_person_id is not None:
        person = db.session.get(Person, spec.escalation_person_id)
        if person is None or not person.is_staff:
            raise InvalidInput("The escalation analyst must be an analyst.", field="levels")
    if spec.escalation_group_id is not None and db.session.get(Group, spec.escalation_group_id) is None:
        raise InvalidInput("There is no such escalation group.", field="levels")


def _name(name: str, model, existing) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise InvalidInput("Give it a name.", field="name")
    if len(name) > NAME_MAX:
        raise InvalidInput(f"Keep the name to {NAME_MAX} characters.", field="name")
    query = sa.select(model.id).where(model.name == name)
    if existing is not None and existing.id is not None:
        query = query.where(model.id != existing.id)
    if db.session.scalar(query) is not None:
        raise InvalidInput(f"{name} exists already.", field="name")
    return name
