"""The forms on the request pages. A new request carries a few task rows;
a row's own mistakes (an approval without an approver, a bad address) are
caught by the row, so the message sits beside that row's field."""

from flask_wtf.file import MultipleFileField
from wtforms import EmailField, FieldList, Form, FormField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from portal.forms import TEXT_MAX, DeskForm, ForwardForm, analyst_choices, group_choices
from switchboard.errors import InvalidInput
from switchboard.people.services import normalize_email
from switchboard.requests.models import TaskKind

TASK_ROWS = 4


class TaskRowForm(Form):
    kind = SelectField(
        "Kind",
        choices=[SelectChoice(TaskKind.ACTION.value, "Action"), SelectChoice(TaskKind.APPROVAL.value, "Approval")],
        default=TaskKind.ACTION.value,
    )
    title = StringField("Task title", validators=[Length(max=200)])
    stage = IntegerField(
        "Stage", default=1, validators=[Optional(), NumberRange(min=1, max=99, message="Stages count from 1 to 99.")]
    )
    analyst = SelectField("Analyst", default="")
    group = SelectField("Group", default="")
    approver_email = EmailField("Approver email", validators=[Length(max=320)])

    def validate(self, extra_validators=None):
        ok = super().validate(extra_validators)
        title = (self.title.data or "").strip()
        approver = (self.approver_email.data or "").strip()
        if not title:
            if approver or self.analyst.data or self.group.data:
                self.title.errors.append("Give the task a title, or clear the row.")
                ok = False
            return ok
        if approver:
            try:
                normalize_email(approver)
            except InvalidInput as exc:
                self.approver_email.errors.append(exc.message)
                ok = False
        elif self.kind.data == TaskKind.APPROVAL.value:
            self.approver_email.errors.append("An approval task needs an approver.")
            ok = False
        return ok

    @property
    def is_blank(self) -> bool:
        return not (self.title.data or "").strip()


class NewRequestForm(DeskForm):
    title = StringField(
        "Title",
        validators=[InputRequired("A request needs a title."), Length(max=200, message="Keep the title to 200 characters.")],
    )
    description = TextAreaField("Description", validators=[Length(max=TEXT_MAX)])
    requester_email = EmailField(
        "Requester email", validators=[Length(max=320)], description="Who asked for it. Empty: you."
    )
    tasks = FieldList(FormField(TaskRowForm), min_entries=TASK_ROWS, max_entries=TASK_ROWS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        analysts, groups = analyst_choices(), group_choices()
        for row in self.tasks:
            row.form.analyst.choices = analysts
            row.form.group.choices = groups


class NoteForm(DeskForm):
    note = TextAreaField("Note", validators=[Length(max=TEXT_MAX)])
    files = MultipleFileField("Attach files")


class CompleteForm(DeskForm):
    note = StringField("Note", validators=[Length(max=TEXT_MAX)], description="Optional.")


class ApproveForm(DeskForm):
    reason = StringField("Comment", validators=[Length(max=TEXT_MAX)], description="Optional.")


class RejectForm(DeskForm):
    reason = StringField("Why reject?", validators=[Length(max=TEXT_MAX)])


class ForwardTaskForm(ForwardForm):
    note = StringField("Note", validators=[Length(max=TEXT_MAX)])
