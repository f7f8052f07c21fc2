"""Forms on the admin pages."""

from wtforms import BooleanField, EmailField, PasswordField, SelectField, StringField
from wtforms.validators import InputRequired, Length

from portal.forms import DeskForm


class NewPersonForm(DeskForm):
    email = EmailField("Email", validators=[InputRequired("Give an email address."), Length(max=320)])
    name = StringField("Name", validators=[Length(max=200)])
    customer = BooleanField("Customer (logs calls by mail)", default=True)
    analyst = BooleanField("Analyst (works calls in the portal)")
    admin = BooleanField("Admin (also an analyst; changes settings)")
    password = PasswordField(
        "Password",
        validators=[Length(max=500)],
        description="Optional: at least 10 characters. Without one, the person cannot log in yet.",
    )


class GroupForm(DeskForm):
    name = StringField("Name", validators=[Length(max=120)])
    email = EmailField("Group email", validators=[Length(max=320)], description="Optional.")


class DefaultGroupForm(DeskForm):
    group = SelectField(
        "Default group for new calls",
        description="Calls that nothing else routes land here: mail through an account without a group "
                    "of its own, calls logged with neither analyst nor group. Its members see them under "
                    "Unassigned in My work.",
    )


class MemberForm(DeskForm):
    person = SelectField("Analyst")


class PriorityNameForm(DeskForm):
    name = StringField("Name", validators=[Length(max=200)])


class ConfirmForm(DeskForm):
    """A bare form for one-button actions (deactivate, remove): just the CSRF token."""
