"""The forms on the call pages. Each has a prefix, so several sit on one
page with distinct field ids (labels stay tied to their inputs)."""

from flask_wtf.file import MultipleFileField
from wtforms import BooleanField, EmailField, SelectField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length

from portal.forms import DeskForm, analyst_choices, group_choices, priority_choices
from switchboard.calls.models import DEFAULT_PRIORITY_ID

TEXT_MAX = 20_000


class LogCallForm(DeskForm):
    customer_email = EmailField(
        "Customer email",
        validators=[InputRequired("Give the customer's email address."), Length(max=320)],
        description="An unknown address becomes a new customer.",
    )
    customer_name = StringField("Customer name", validators=[Length(max=200)], description="Optional, for a new customer.")
    summary = StringField(
        "Summary",
        validators=[
            InputRequired("A call needs a summary."),
            Length(max=200, message="Keep the summary to 200 characters."),
        ],
    )
    description = TextAreaField("Description", validators=[Length(max=TEXT_MAX)])
    priority = SelectField("Priority", default=str(DEFAULT_PRIORITY_ID))
    analyst = SelectField("Analyst", default="")
    group = SelectField("Group", default="")
    files = MultipleFileField("Attachments")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.priority.choices = priority_choices()
        self.analyst.choices = analyst_choices()
        self.group.choices = group_choices()


class UpdateForm(DeskForm):
    note = TextAreaField("Note", validators=[Length(max=TEXT_MAX)])
    internal = BooleanField("Internal note (analysts only)")
    files = MultipleFileField("Attach files")


class ForwardForm(DeskForm):
    analyst = SelectField("Analyst", default="")
    group = SelectField("Group", default="")
    note = TextAreaField("Note for the new owner", validators=[Length(max=TEXT_MAX)])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.analyst.choices = analyst_choices()
        self.group.choices = group_choices()


class ResolveForm(DeskForm):
    resolution = TextAreaField("Resolution", validators=[Length(max=TEXT_MAX)])


class CloseForm(DeskForm):
    note = TextAreaField("Closing note", validators=[Length(max=TEXT_MAX)], description="Optional.")


class ReopenForm(DeskForm):
    reason = TextAreaField("Why reopen?", validators=[Length(max=TEXT_MAX)], description="Optional.")


class HoldForm(DeskForm):
    reason = StringField("Waiting for", validators=[Length(max=TEXT_MAX)])


class ResumeForm(DeskForm):
    note = StringField("Note", validators=[Length(max=TEXT_MAX)], description="Optional.")


class PriorityForm(DeskForm):
    priority = SelectField("Priority")
    reason = StringField("Reason", validators=[Length(max=TEXT_MAX)], description="Optional.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.priority.choices = priority_choices()
