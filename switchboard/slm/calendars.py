"""Business time: when a desk's calendar counts the clock, and arithmetic on it (add N business
seconds to an instant, business seconds between two instants), right across weekends, holidays
and daylight-saving changes.

A calendar is a time zone (IANA name), weekly hours (several spans a day) and holidays (dates,
optionally every year). The work is bounded: it walks day by day (each day's spans converted
to UTC once and cached), never minute by minute, and gives up with an error past MAX_DAYS
rather than loop on a calendar with no business hours."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

# Any target longer than this much calendar is a mistake, not a promise (and a calendar whose
# hours are all holidays would otherwise be walked for ever).
MAX_DAYS = 366 * 30
DAY_MINUTES = 24 * 60


class CalendarError(ValueError):
    """The calendar cannot give an answer (no business hours at all, or past MAX_DAYS)."""


def time_zone(name: str) -> ZoneInfo:
    """The zone for an IANA name, or a CalendarError saying the name is unknown."""
    name = (name or "").strip()
    if not name or name not in _zone_names():
        raise CalendarError(f"{name!r} is not an IANA time zone name (e.g. Europe/London).")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CalendarError(f"{name!r} is not an IANA time zone name (e.g. Europe/London).") from None


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


@dataclass(frozen=True)
class BusinessCalendar:
    """`week[weekday]` (Monday = 0) is a tuple of (start, end) minutes after local midnight,
    end <= 1440; `holidays` are dates, `yearly` (month, day) pairs closed every year.
    `always` is the built-in 24x7 calendar: every second counts."""

    zone: str = "UTC"
    week: tuple[tuple[tuple[int, int], ...], ...] = ((),) * 7
    holidays: frozenset[date] = field(default_factory=frozenset)
    yearly: frozenset[tuple[int, int]] = field(default_factory=frozenset)
    always: bool = False

    def __post_init__(self):
        if not self.always and not any(self.week):
            raise CalendarError("A calendar needs business hours on at least one day.")
        for spans in self.week:
            for start, end in spans:
                if not 0 <= start < end <= DAY_MINUTES:
                    raise CalendarError(f"Business hours {start}-{end} are not within one day.")

    # -- the arithmetic --------------------------------------------------------------------

    def add(self, instant: datetime, seconds: float) -> datetime:
        """The instant `seconds` of business time after `instant` (0 or less: `instant`,
        or, outside hours, itself: the clock has not moved)."""
        _aware(instant)
        if seconds <= 0:
            return instant
        if self.always:
            return instant + timedelta(seconds=seconds)
        start = instant.timestamp()
        left = float(seconds)
        day = self._local_date(instant) - timedelta(days=1)  # a span may start the evening before in UTC
        for _ in range(MAX_DAYS):
            for span_start, span_end in _spans_utc(self, day.toordinal()):
                if span_end <= start:
                    continue
                begin = max(span_start, start)
                length = span_end - begin
                if left <= length:
                    return _from_ts(begin + left)
                left -= length
            day += timedelta(days=1)
        raise CalendarError(f"No business time within {MAX_DAYS} days of {instant:%Y-%m-%d}.")

    def between(self, earlier: datetime, later: datetime) -> float:
        """Business seconds from `earlier` to `later` (0 when `later` is not after it)."""
        _aware(earlier)
        _aware(later)
        if later <= earlier:
            return 0.0
        if self.always:
            return (later - earlier).total_seconds()
        start, end = earlier.timestamp(), later.timestamp()
        first = self._local_date(earlier) - timedelta(days=1)
        last = self._local_date(later) + timedelta(days=1)
        if (last - first).days > MAX_DAYS:
            raise CalendarError(f"More than {MAX_DAYS} days between {earlier:%Y-%m-%d} and {later:%Y-%m-%d}.")
        total = 0.0
        for ordinal in range(first.toordinal(), last.toordinal() + 1):
            for span_start, span_end in _spans_utc(self, ordinal):
                low, high = max(span_start, start), min(span_end, end)
                if high > low:
                    total += high - low
        return total

    def is_open(self, instant: datetime) -> bool:
        if self.always:
            return True
        ts = instant.timestamp()
        ordinal = self._local_date(instant).toordinal()
        return any(s <= ts < e for s, e in _spans_utc(self, ordinal))

    def closed_on(self, day: date) -> bool:
        return day in self.holidays or (day.month, day.day) in self.yearly

    def _local_date(self, instant: datetime) -> date:
        return instant.astimezone(ZoneInfo(self.zone)).date()


TWENTY_FOUR_SEVEN = BusinessCalendar(zone="UTC", always=True)


@lru_cache(maxsize=65536)
def _spans_utc(calendar: BusinessCalendar, ordinal: int) -> tuple[tuple[float, float], ...]:
    """One local day's business spans as UTC timestamps. Local wall times are turned into
    instants by the zone, so a day of 09:00-17:00 is 8 hours either side of a DST change,
    and a span over the change (00:00-24:00) is 23 or 25 hours long, as it really is."""
    day = date.fromordinal(ordinal)
    if calendar.closed_on(day):
        return ()
    zone = ZoneInfo(calendar.zone)
    spans = []
    for start, end in calendar.week[day.weekday()]:
        spans.append((_local_ts(day, start, zone), _local_ts(day, end, zone)))
    return tuple(spans)


def _local_ts(day: date, minutes: int, zone: ZoneInfo) -> float:
    if minutes >= DAY_MINUTES:
        day, minutes = day + timedelta(days=1), minutes - DAY_MINUTES
    wall = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)
    return wall.timestamp()


def _from_ts(ts: float) -> datetime:
    # Whole microseconds, so a stored instant reads back equal.
    return datetime.fromtimestamp(math.floor(ts * 1_000_000) / 1_000_000, timezone.utc)


def _aware(instant: datetime) -> None:
    if instant.tzinfo is None:
        raise ValueError("naive datetime given; business time needs an aware instant")


# -- parsing what admins write -----------------------------------------------------------------

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def parse_spans(text: str) -> tuple[tuple[int, int], ...]:
    """'09:00-12:30, 13:30-17:00' -> ((540, 750), (810, 1020)); '' -> closed all day.
    Spans are sorted and must not overlap; '24:00' ends a day."""
    spans = []
    for part in (text or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            start_text, end_text = (p.strip() for p in part.split("-"))
            start, end = _minutes(start_text), _minutes(end_text)
        except ValueError:
            raise CalendarError(f"{part!r}: write hours as HH:MM-HH:MM, e.g. 09:00-17:30.") from None
        if not start < end:
            raise CalendarError(f"{part!r}: the end must be after the start.")
        spans.append((start, end))
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:]):
        if start < end:
            raise CalendarError(f"{format_spans(tuple(spans))}: the spans overlap.")
    return tuple(spans)


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    if len(minutes) != 2 or not hours.isdigit() or not minutes.isdigit():
        raise ValueError(text)
    value = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or value > DAY_MINUTES:
        raise ValueError(text)
    return value


def format_spans(spans) -> str:
    return ", ".join(f"{s // 60:02d}:{s % 60:02d}-{e // 60:02d}:{e % 60:02d}" for s, e in spans)
