"""Logging in and out. Sessions are bound to a person's session version, so
changing a password or deactivating someone ends their sessions everywhere."""

import re
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from switchboard.db import db
from switchboard.people.models import Person, login_password_matches
from switchboard.people.services import find_person

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Log in to continue."
login_manager.session_protection = "strong"
limiter = Limiter(key_func=get_remote_address, default_limits=[])


class PortalUser(UserMixin):
    """The logged-in person, as Flask-Login wants to see it."""

    def __init__(self, person: Person):
        self.person = person

    def get_id(self) -> str:
        return f"{self.person.id}:{self.person.session_version}"

    @property
    def is_active(self) -> bool:
        return self.person.can_log_in and self.person.is_staff


@login_manager.user_loader
def load_user(user_id: str):
    try:
        person_id, version = (int(part) for part in user_id.split(":"))
    except ValueError:
        return None
    person = db.session.get(Person, person_id)
    if person is None or person.session_version != version:
        return None
    user = PortalUser(person)
    # Someone deactivated, or no longer an analyst or admin, is logged out at once.
    return user if user.is_active else None


def current_person() -> Person | None:
    return current_user.person if current_user.is_authenticated else None


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=500)])


# Browsers read a backslash as a slash and drop tabs and line breaks from a URL, so
# "/\evil.example" or "/<TAB>/evil.example" in a Location header leaves the site.
_NOT_IN_A_NEXT_PATH = re.compile(r"[\\\x00-\x20\x7f]")


def _safe_next(target: str | None) -> str:
    # Only same-site paths: never send someone off to another host after login.
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and not _NOT_IN_A_NEXT_PATH.search(target)
        and not urlsplit(target).netloc
    ):
        return target
    return url_for("work.my_work")


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("work.my_work"))
    form = LoginForm()
    if form.validate_on_submit():
        person = find_person(form.email.data)
        # The slow hash runs for every address (known or not, with a password or not),
        # so neither the wording nor the time taken tells which accounts exist.
        if login_password_matches(person, form.password.data) and person.active:
            if not person.is_staff:
                # Only someone who knows this customer's password reads this.
                form.email.errors.append("The portal is for analysts; customers use email.")
            else:
                login_user(PortalUser(person))
                return redirect(_safe_next(request.args.get("next")))
        else:
            # One message for every failure: no hint of which addresses exist.
            form.password.errors.append("Wrong email or password.")
    return render_template("auth/login.html", form=form), (200 if not form.errors else 400)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    # Server side too: the session cookie, replayed after logout, no longer
    # works (nor do the person's other sessions: the version is per person).
    current_person().end_sessions()
    db.session.commit()
    logout_user()
    flash("You are logged out.")
    return redirect(url_for("auth.login"))
