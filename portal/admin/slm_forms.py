"""Forms of the service level admin pages: a calendar (zone, hours per weekday, holidays) and
an SLA (calendar, targets per priority in minutes, escalation levels with their recipients)."""

from wtforms import BooleanField, Form, FormField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields import FieldList
from wtforms.validators import Length, NumberRange, Optional

from portal.forms import CheckboxesField, DeskForm
from switchboard.slm.calendars import WEEKDAYS

LEVEL_ROWS = 5  # per target; the breach (100%) is added when no row says 100


class CalendarForm(DeskForm):
    name = StringField("Name", validators=[Length(max=80)])
    time_zone = StringField("Time zone", validators=[Length(max=64)], default="Europe/London",
                            description="IANA name, e.g. Europe/London, America/New_York, UTC.")
    holidays = TextAreaField("Holidays", validators=[Length(max=20_000)],
                             description="One a line: 2026-12-25 Christmas Day yearly (the name and "
                                         "'yearly' are optional).")


for _number, _day in enumerate(WEEKDAYS):
    setattr(CalendarForm, f"day{_number}", StringField(
        _day, validators=[Length(max=200)], default="09:00-17:00" if _number < 5 else "",
        description="Business hours, e.g. 09:00-12:30, 13:30-17:00; empty: closed." if _number == 0 else ""))


class TargetRow(Form):
    response_minutes = IntegerField("Response (minutes)", validators=[Optional(), NumberRange(min=1)])
    fix_minutes = IntegerField("Fix (minutes)", validators=[Optional(), NumberRange(min=1)])


class LevelRow(Form):
    percent = IntegerField("At % of the target", validators=[Optional(), NumberRange(min=1, max=100)])
    assigned_analyst = BooleanField("Assigned analyst")
    group_members = BooleanField("Group members")
    # Checked by the service (an analyst, a group that exists), so a missing choice is "none".
    person = SelectField("Escalation analyst", validate_choice=False)
    group = SelectField("Escalation group", validate_choice=False)


class SlaForm(DeskForm):
    name = StringField("Name", validators=[Length(max=80)])
    calendar = SelectField("Calendar", validate_choice=False)  # checked by _calendar_id
    is_default = BooleanField("The desk's default SLA (for calls whose customer and group name none)")
    groups = CheckboxesField("The default SLA of these groups' calls", validate_choice=False)
    customers = TextAreaField("The default SLA of these customers' calls (one address a line; before a group's)",
                              validators=[Length(max=100_000)])
    active = BooleanField("Active", default=True)
    targets = FieldList(FormField(TargetRow), min_entries=4, max_entries=10)
    response_levels = FieldList(FormField(LevelRow), min_entries=LEVEL_ROWS, max_entries=LEVEL_ROWS)
    fix_levels = FieldList(FormField(LevelRow), min_entries=LEVEL_ROWS, max_entries=LEVEL_ROWS)
