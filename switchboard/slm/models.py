"""Service level records: business calendars, SLAs with their targets per priority, the
escalation levels of each target, and the firings (one row per call, target and level, which
a unique constraint keeps to one however many sweeps run)."""

import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from switchboard.db import UTCDateTime, db, utcnow
from switchboard.slm.calendars import TWENTY_FOUR_SEVEN, BusinessCalendar


class Target(enum.Enum):
    RESPONSE = "response"
    FIX = "fix"

    @property
    def label(self) -> str:
        return {"response": "Response", "fix": "Fix"}[self.value]


def _enum(kind):
    return sa.Enum(kind, native_enum=False, length=10, values_callable=lambda e: [m.value for m in e])


class SlaCalendar(db.Model):
    """A business calendar. The 24x7 calendar is built in (an SLA with no calendar)."""

    __tablename__ = "sla_calendar"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(80), unique=True)
    time_zone: Mapped[str] = mapped_column(sa.String(64), default="UTC")

    hours = relationship("CalendarHours", cascade="all, delete-orphan", order_by="[CalendarHours.weekday, CalendarHours.start_minute]")
    holidays = relationship("CalendarHoliday", cascade="all, delete-orphan", order_by="CalendarHoliday.day")

    def business_calendar(self) -> BusinessCalendar:
        week = [[] for _ in range(7)]
        for span in self.hours:
            week[span.weekday].append((span.start_minute, span.end_minute))
        return BusinessCalendar(
            zone=self.time_zone,
            week=tuple(tuple(sorted(spans)) for spans in week),
            holidays=frozenset(h.day for h in self.holidays if not h.yearly),
            yearly=frozenset((h.day.month, h.day.day) for h in self.holidays if h.yearly),
        )


class CalendarHours(db.Model):
    """One span of business hours on a weekday (Monday = 0), in minutes after local midnight."""

    __tablename__ = "sla_calendar_hours"
    __table_args__ = (sa.CheckConstraint("start_minute >= 0 AND start_minute < end_minute AND end_minute <= 1440",
                                         name="span_within_day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    calendar_id: Mapped[int] = mapped_column(sa.ForeignKey("sla_calendar.id", ondelete="CASCADE"), index=True)
    weekday: Mapped[int] = mapped_column(sa.SmallInteger)
    start_minute: Mapped[int] = mapped_column(sa.SmallInteger)
    end_minute: Mapped[int] = mapped_column(sa.SmallInteger)


class CalendarHoliday(db.Model):
    """A closed day; `yearly` closes the same month and day every year."""

    __tablename__ = "sla_calendar_holiday"
    __table_args__ = (sa.UniqueConstraint("calendar_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    calendar_id: Mapped[int] = mapped_column(sa.ForeignKey("sla_calendar.id", ondelete="CASCADE"))
    day = mapped_column(sa.Date, nullable=False)
    name: Mapped[str] = mapped_column(sa.String(80), default="")
    yearly: Mapped[bool] = mapped_column(default=False)


class Sla(db.Model):
    """A service level agreement: a calendar, targets per priority, escalation levels."""

    __tablename__ = "sla"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(80), unique=True)
    # None: the built-in 24x7 calendar.
    calendar_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sla_calendar.id"))
    # The desk's default: calls whose customer and group name no SLA get this one.
    is_default: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    calendar = relationship("SlaCalendar")
    targets = relationship("SlaTarget", cascade="all, delete-orphan", order_by="SlaTarget.priority_id")
    levels = relationship("SlaLevel", cascade="all, delete-orphan", order_by="[SlaLevel.target, SlaLevel.number]")

    def business_calendar(self) -> BusinessCalendar:
        return self.calendar.business_calendar() if self.calendar is not None else TWENTY_FOUR_SEVEN

    def target_for(self, priority_id: int):
        return next((t for t in self.targets if t.priority_id == priority_id), None)


class SlaTarget(db.Model):
    """Business seconds to respond and to fix a call of one priority (None: no target)."""

    __tablename__ = "sla_target"
    __table_args__ = (sa.CheckConstraint("(response_seconds IS NULL OR response_seconds > 0)"
                                         " AND (fix_seconds IS NULL OR fix_seconds > 0)", name="positive"),)

    sla_id: Mapped[int] = mapped_column(sa.ForeignKey("sla.id", ondelete="CASCADE"), primary_key=True)
    priority_id: Mapped[int] = mapped_column(sa.ForeignKey("priority.id"), primary_key=True)
    response_seconds: Mapped[int | None]
    fix_seconds: Mapped[int | None]

    def seconds(self, target: Target) -> int | None:
        return self.response_seconds if target is Target.RESPONSE else self.fix_seconds


class SlaLevel(db.Model):
    """An escalation level: at `percent` of a target, mail its recipients. The level at 100%
    is the breach. Numbers follow the percentages (1 = the earliest) within a target."""

    __tablename__ = "sla_level"
    __table_args__ = (
        sa.UniqueConstraint("sla_id", "target", "number"),
        sa.UniqueConstraint("sla_id", "target", "percent"),
        sa.CheckConstraint("percent > 0 AND percent <= 100", name="percent_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sla_id: Mapped[int] = mapped_column(sa.ForeignKey("sla.id", ondelete="CASCADE"))
    target: Mapped[Target] = mapped_column(_enum(Target))
    number: Mapped[int] = mapped_column(sa.SmallInteger)
    percent: Mapped[int] = mapped_column(sa.SmallInteger)
    # Recipients: any of the call's assigned analyst, its group's members, a named
    # escalation analyst, a named escalation group.
    notify_assigned_analyst: Mapped[bool] = mapped_column(default=True)
    notify_group_members: Mapped[bool] = mapped_column(default=False)
    escalation_person_id: Mapped[int | None] = mapped_column(sa.ForeignKey("person.id", ondelete="SET NULL"))
    escalation_group_id: Mapped[int | None] = mapped_column(sa.ForeignKey("analyst_group.id", ondelete="SET NULL"))

    escalation_person = relationship("Person")
    escalation_group = relationship("Group")

    @property
    def is_breach(self) -> bool:
        return self.percent >= 100

    def threshold(self, target_seconds: int) -> int:
        """Business seconds of the target used when this level is reached."""
        return -(-target_seconds * self.percent // 100)  # ceiling: never early


class SlaFiring(db.Model):
    """A level that fired for a call. The unique constraint, not a check in Python, is what
    makes each level fire once per call, even when two sweeps run at the same moment."""

    __tablename__ = "sla_firing"
    __table_args__ = (sa.UniqueConstraint("call_id", "target", "level"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(sa.ForeignKey("call.id", ondelete="CASCADE"))
    target: Mapped[Target] = mapped_column(_enum(Target))
    level: Mapped[int] = mapped_column(sa.SmallInteger)
    percent: Mapped[int] = mapped_column(sa.SmallInteger)
    fired_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
