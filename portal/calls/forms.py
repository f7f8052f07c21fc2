"""The forms on the call pages. Each has a prefix, so several sit on one
page with distinct field ids (labels stay tied to their inputs)."""

from flask_wtf.file import MultipleFileField
from wtforms import BooleanField, EmailField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length

from portal.auth import current_person
from portal.forms import TEXT_MAX, CheckboxesField, DeskForm, analyst_choices, group_choices, priority_choices
from switchboard.calls.models import DEFAULT_PRIORITY_ID
from switchboard.db import db
from switchboard.history.models import Attachment, HistoryEntry
from switchboard.outbox.catalogue import MessageType
from switchboard.outbox.notify import told_of_a_desk_note
from switchboard.outbox.settings import mail_wanted


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

    def for_call(self, call, *, fresh: bool) -> None:
        """Says, before the note is added, who it will be mailed to (never an internal one)."""
        me = current_person()
        if me is None or not me.is_staff:
            return  # a customer's own note is mailed to nobody: nothing to say
        told = told_of_a_desk_note(call, me)
        if told:
            who = ", ".join(f"{p.display_name} <{p.email}>" for p in told)
            self.internal.description = (f"Unticked, the note is mailed to {who}. "
                                         "Ticked, it stays inside the desk and nobody is mailed.")
        elif not mail_wanted(MessageType.CALL_UPDATED_BY_DESK):
            self.internal.description = ("Unticked, the customer sees the note on the call; nobody is mailed "
                                         "(turned off in the notification settings).")
        else:
            self.internal.description = ("Unticked, the customer sees the note on the call; nobody is mailed "
                                         "(no active customer with an address who takes mail).")


# Files a mail from the call page may attach, newest first.
MAIL_FILES_OFFERED = 20


class MailForm(DeskForm):
    to = StringField("To", validators=[Length(max=4000)], description="Several addresses: separate them with commas.")
    subject = StringField("Subject", validators=[Length(max=300)])
    text = TextAreaField("Message", validators=[Length(max=TEXT_MAX)])
    attachments = CheckboxesField("Attach files from the call", coerce=int)
    use_template = BooleanField("Wrap it in the desk’s standard letter (greeting, call reference, signature)")

    def for_call(self, call, *, fresh: bool) -> None:
        # The newest files only: a long call's hundreds of files would be a page of checkboxes
        # (and a query that grows with the call) on every view of it.
        files = db.session.scalars(
            db.select(Attachment).join(HistoryEntry).where(HistoryEntry.call_id == call.id)
            .order_by(Attachment.id.desc()).limit(MAIL_FILES_OFFERED)
        ).all()
        if files:
            self.attachments.choices = [SelectChoice(f.id, f.filename) for f in reversed(files)]
            if len(files) == MAIL_FILES_OFFERED:
                self.attachments.description = f"The newest {MAIL_FILES_OFFERED} files."
        else:
            del self.attachments
        if fresh:
            self.to.data = call.customer.email
            self.subject.data = f"{call.ref}: {call.summary}"


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
