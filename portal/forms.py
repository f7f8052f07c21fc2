"""Form pieces every feature uses: choices of analysts, groups and
priorities, uploaded files, and running a service so that its complaint
(`InvalidInput`) lands beside the right field with nothing changed."""

import re

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length
from markupsafe import escape
from wtforms.widgets import CheckboxInput, ListWidget, Select

from switchboard.calls.admin import priorities
from switchboard.db import db
from switchboard.errors import InvalidInput
from switchboard.history.services import NewAttachment
from switchboard.outbox.settings import get_switch
from switchboard.people.models import Group, Person
from switchboard.people.services import analysts, groups

NOBODY = ""
# A browser sends these for files nobody should open inline.
UPLOAD_FALLBACK_TYPE = "application/octet-stream"


# The longest note or description a form takes.
TEXT_MAX = 20_000


class DeskForm(FlaskForm):
    """A form with form-level errors (for a complaint that names no field).

    CSRF is checked once for every POST by CSRFProtect (the form's hidden
    `csrf_token`, or htmx's X-CSRFToken header), so the form does not check
    it a second time under a prefixed name."""

    class Meta:
        csrf = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.general_errors: list[str] = []

    def add_error(self, field_name: str | None, message: str) -> None:
        field = self._find_field(field_name) if field_name else None
        if field is not None:
            # WTForms gives a tuple until validation has run.
            field.errors = list(field.errors) + [message]
        else:
            self.general_errors.append(message)

    def _find_field(self, name: str):
        """A field by its short name ("note") or its full name, nested rows
        included ("tasks-0-approver_email")."""
        if name != "csrf_token" and name in self._fields:
            return self._fields[name]
        for field in _walk(self):
            if field.name == name:
                return field
        return None

    @property
    def has_errors(self) -> bool:
        return bool(self.errors or self.general_errors)

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        # One-line fields (names, summaries, titles, addresses) end up in mail
        # headers and bodies: a CR or LF there could forge a header or a line of
        # the desk's text. A browser never sends one from such an input, so
        # whatever does is refused, beside its field, for every form at once.
        for field in _walk(self):
            if _is_one_line(field) and isinstance(field.data, str) and _LINE_BREAKS.search(field.data):
                field.errors = list(field.errors) + [ONE_LINE_MESSAGE]
                ok = False
        return ok


ONE_LINE_MESSAGE = "Write this on one line (no line breaks or control characters)."
_LINE_BREAKS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029\x85]")


def _is_one_line(field) -> bool:
    # Multi-line fields and passwords (any characters may be in a password) excepted.
    return isinstance(field, StringField) and not isinstance(field, (TextAreaField, PasswordField))


class CheckboxesField(SelectMultipleField):
    """Several choices as a list of checkboxes (works without JS, on a phone
    too); _forms.html renders it as a fieldset whose legend is the label."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def form_asked_for(name: str | None, offered) -> str | None:
    """Forms on demand (see on_demand in _forms.html): the action form a page renders open
    because the no-JS link asked for it (?form=<name>), if it is one the page offers to this
    person; any other name is ignored (the page shows without it, no error)."""
    return name if name and name in offered else None


def offer_mail_choice(form) -> None:
    """A forward form keeps its "Email the new owner" box only while the
    admin's switch lets analysts choose; otherwise the settings decide."""
    if not get_switch("forward_email_optional"):
        del form.notify


def mail_choice(form) -> bool | None:
    """True/False when the analyst chose, None when the settings decide."""
    return form.notify.data if "notify" in form._fields else None


def _walk(form):
    for field in form:
        entries = getattr(field, "entries", None)
        if entries is not None:  # a FieldList
            for entry in entries:
                yield from _walk(entry.form) if hasattr(entry, "form") else [entry]
        elif hasattr(field, "form") and hasattr(field.form, "_fields"):  # a FormField
            yield from _walk(field.form)
        else:
            yield field


def attempt(form: DeskForm, action, *, field_map: dict | None = None):
    """Validates the form and runs `action()` (one service call), committing
    once. On bad input: roll back, show the message beside the field, return
    None. Other domain errors (not found, not allowed, wrong state) go on to
    the error pages, after the same rollback."""
    if not form.validate_on_submit():
        return None
    try:
        result = action()
        db.session.commit()
    except InvalidInput as exc:
        db.session.rollback()
        name = (field_map or {}).get(exc.field, exc.field)
        form.add_error(name, exc.message)
        return None
    return result if result is not None else True


def analyst_choices(blank: str = "— nobody —") -> list[SelectChoice]:
    return [SelectChoice(NOBODY, blank)] + [SelectChoice(str(p.id), p.display_name) for p in analysts()]


def group_choices(blank: str = "— no group —") -> list[SelectChoice]:
    return [SelectChoice(NOBODY, blank)] + [SelectChoice(str(g.id), g.name) for g in groups()]


def priority_choices() -> list[SelectChoice]:
    return [SelectChoice(str(p.id), p.name) for p in priorities()]


def chosen_person(value: str | None) -> Person | None:
    if not value:
        return None
    person = db.session.get(Person, int(value))
    if person is None:
        raise InvalidInput("That person does not exist any more.", field="analyst")
    return person


def chosen_group(value: str | None) -> Group | None:
    if not value:
        return None
    group = db.session.get(Group, int(value))
    if group is None:
        raise InvalidInput("That group does not exist any more.", field="group")
    return group


def uploads(field) -> list[NewAttachment]:
    """The files posted in a file field, skipping empty inputs."""
    files = []
    for item in field.data or []:
        if item is None or not getattr(item, "filename", ""):
            continue
        data = item.read()
        name = _clean_filename(item.filename)
        files.append(NewAttachment(filename=name, content_type=item.mimetype or UPLOAD_FALLBACK_TYPE, data=data))
    return files


def _clean_filename(name: str) -> str:
    # Keep the name people gave it (it is only ever shown and offered as a
    # download name), minus paths and control characters.
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:255] or "attachment"


class QuickSelect(Select):
    """WTForms' <select> with plain options written directly: its own builds each option
    through html_params, about 40 µs apiece, and an analyst choice has one per analyst on
    every call page and every action's answer (200 analysts: most of the page's time)."""

    @classmethod
    def render_option(cls, choice, **kwargs):
        if kwargs or choice.render_kw or isinstance(choice.value, bool):
            return super().render_option(choice, **kwargs)
        selected = " selected" if choice.selected else ""
        label = choice.label or choice.value
        return f'<option value="{escape(choice.value)}"{selected}>{escape(label)}</option>'


class ForwardForm(DeskForm):
    """Forwarding a call or a task: to an analyst, a group, or both."""

    analyst = SelectField("Analyst", default="", widget=QuickSelect())
    group = SelectField("Group", default="", widget=QuickSelect())
    note = TextAreaField("Note for the new owner", validators=[Length(max=TEXT_MAX)])
    notify = BooleanField("Email the new owner", default=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.analyst.choices = analyst_choices()
        self.group.choices = group_choices()
        offer_mail_choice(self)
