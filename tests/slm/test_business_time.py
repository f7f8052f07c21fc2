"""Business-time arithmetic on calendars: out of hours, weekends, holidays, the DST changes in
Europe/London and America/New_York, bounded work over years, and add/between round trips."""

import time
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from switchboard.slm.calendars import TWENTY_FOUR_SEVEN, BusinessCalendar, CalendarError, parse_spans

UTC = timezone.utc
WORKDAY = ((9 * 60, 17 * 60),)
LONDON = BusinessCalendar(zone="Europe/London", week=(WORKDAY,) * 5 + ((), ()),
                          holidays=frozenset({date(2026, 5, 4)}), yearly=frozenset({(12, 25), (12, 26)}))
NEW_YORK = BusinessCalendar(zone="America/New_York", week=(WORKDAY,) * 5 + ((), ()))
# Lunch closed: two spans a day.
SPLIT = BusinessCalendar(zone="Europe/London", week=(parse_spans("09:00-12:30, 13:30-17:00"),) * 5 + ((), ()))
ALL_DAY_LONDON = BusinessCalendar(zone="Europe/London", week=(((0, 1440),),) * 7)
HOUR = 3600


def at(zone, *fields):
    return datetime(*fields, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def test_a_call_logged_out_of_hours_starts_counting_at_the_next_opening():
    logged = at("Europe/London", 2026, 6, 9, 20, 0)  # Tuesday evening
    assert LONDON.add(logged, 4 * HOUR) == at("Europe/London", 2026, 6, 10, 13, 0)
    assert LONDON.between(logged, at("Europe/London", 2026, 6, 10, 9, 0)) == 0


def test_the_weekend_does_not_count():
    friday = at("Europe/London", 2026, 6, 12, 15, 0)
    assert LONDON.add(friday, 4 * HOUR) == at("Europe/London", 2026, 6, 15, 11, 0)
    assert LONDON.between(friday, at("Europe/London", 2026, 6, 15, 11, 0)) == 4 * HOUR


def test_holidays_on_a_date_and_every_year_do_not_count():
    # Friday 1 May 2026, then the Monday 4 May holiday.
    assert LONDON.add(at("Europe/London", 2026, 5, 1, 16, 0), 2 * HOUR) == at("Europe/London", 2026, 5, 5, 10, 0)
    # Christmas and Boxing Day, every year: Thursday 24 Dec 2026 -> Monday 28th; in 2027 the
    # 27th (a Monday) is open.
    assert LONDON.add(at("Europe/London", 2026, 12, 24, 16, 0), 2 * HOUR) == at("Europe/London", 2026, 12, 28, 10, 0)
    assert LONDON.add(at("Europe/London", 2027, 12, 24, 16, 0), 2 * HOUR) == at("Europe/London", 2027, 12, 27, 10, 0)


@pytest.mark.parametrize("zone, calendar, friday, monday", [
    # Spring forward (London 29 March, New York 8 March 2026) and fall back (25 October, 1 November).
    ("Europe/London", LONDON, (2026, 3, 27), (2026, 3, 30)),
    ("Europe/London", LONDON, (2026, 10, 23), (2026, 10, 26)),
    ("America/New_York", NEW_YORK, (2026, 3, 6), (2026, 3, 9)),
    ("America/New_York", NEW_YORK, (2026, 10, 30), (2026, 11, 2)),
])
def test_business_hours_stay_local_across_the_dst_changes(zone, calendar, friday, monday):
    start = at(zone, *friday, 16, 0)
    due = calendar.add(start, 2 * HOUR)
    assert due == at(zone, *monday, 10, 0)  # 10:00 local, whatever the offset did meanwhile
    assert calendar.between(start, due) == 2 * HOUR
    assert (due - start) != timedelta(days=2, hours=18)  # the wall clock moved: not plain arithmetic


@pytest.mark.parametrize("day, hours", [((2026, 3, 29), 23), ((2026, 10, 25), 25)])
def test_a_day_of_business_hours_over_a_dst_change_is_as_long_as_it_really_is(day, hours):
    midnight = at("Europe/London", *day, 0, 0)
    next_midnight = at("Europe/London", *(date(*day) + timedelta(days=1)).timetuple()[:3], 0, 0)
    assert ALL_DAY_LONDON.between(midnight, next_midnight) == hours * HOUR
    assert ALL_DAY_LONDON.add(midnight, hours * HOUR) == next_midnight


def test_several_spans_a_day_skip_the_gap():
    morning = at("Europe/London", 2026, 6, 9, 12, 0)
    assert SPLIT.add(morning, HOUR) == at("Europe/London", 2026, 6, 9, 14, 0)
    assert SPLIT.between(morning, at("Europe/London", 2026, 6, 9, 14, 0)) == HOUR


def test_the_built_in_calendar_counts_every_second():
    start = at("UTC", 2026, 12, 25, 23, 0)
    assert TWENTY_FOUR_SEVEN.add(start, 90) == start + timedelta(seconds=90)
    assert TWENTY_FOUR_SEVEN.between(start, start + timedelta(days=3)) == 3 * 24 * HOUR


def test_years_of_calendar_are_computed_quickly():
    start = at("Europe/London", 2026, 1, 5, 9, 0)
    began = time.process_time()
    due = LONDON.add(start, 5 * 250 * 8 * HOUR)  # about five years of working days
    assert LONDON.between(start, due) == 5 * 250 * 8 * HOUR
    assert time.process_time() - began < 0.5
    assert date(2030, 6, 1) < due.date() < date(2031, 6, 1)


def test_a_calendar_without_hours_is_refused_and_one_without_open_days_stops():
    with pytest.raises(CalendarError):
        BusinessCalendar(zone="UTC", week=((),) * 7)
    every_day_closed = BusinessCalendar(zone="UTC", week=(WORKDAY,) * 7,
                                        yearly=frozenset((d.month, d.day) for d in
                                                         (date(2024, 1, 1) + timedelta(days=i) for i in range(366))))
    began = time.process_time()
    with pytest.raises(CalendarError):
        every_day_closed.add(at("UTC", 2026, 1, 1, 0, 0), 1)
    assert time.process_time() - began < 5


def test_hours_as_admins_write_them():
    assert parse_spans("13:30-17:00, 09:00-12:30") == ((540, 750), (810, 1020))
    assert parse_spans("00:00-24:00") == ((0, 1440),)
    for bad in ("9-5", "09:00-08:00", "09:00-12:00, 11:00-13:00", "25:00-26:00", "09:60-10:00"):
        with pytest.raises(CalendarError):
            parse_spans(bad)


CALENDARS = st.sampled_from([LONDON, NEW_YORK, SPLIT, ALL_DAY_LONDON, TWENTY_FOUR_SEVEN])
INSTANTS = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(calendar=CALENDARS, start=INSTANTS, seconds=st.integers(min_value=0, max_value=60 * 24 * HOUR))
def test_adding_then_measuring_gives_back_the_seconds(calendar, start, seconds):
    due = calendar.add(start, seconds)
    assert due >= start
    assert calendar.between(start, due) == pytest.approx(seconds, abs=1e-3)


@settings(max_examples=200, deadline=None)
@given(calendar=CALENDARS, start=INSTANTS, first=st.integers(0, 10 * 24 * HOUR), second=st.integers(0, 10 * 24 * HOUR))
def test_adding_in_two_steps_is_adding_once(calendar, start, first, second):
    assert abs((calendar.add(calendar.add(start, first), second)
                - calendar.add(start, first + second)).total_seconds()) < 1e-3
