"""My settings: what the logged-in person decides for themselves. For now,
whether the desk sends them only essential mail."""

from flask import Blueprint, flash, redirect, render_template, url_for
from wtforms import BooleanField

from portal.auth import current_person
from portal.forms import DeskForm, attempt
from switchboard.outbox.settings import is_opted_out, set_mail_opt_out

bp = Blueprint("me", __name__, url_prefix="/me")


class MailPreferenceForm(DeskForm):
    essential_only = BooleanField("Send me only essential mail")


@bp.route("/settings", methods=["GET", "POST"])
def settings():
    me = current_person()
    form = MailPreferenceForm(data={"essential_only": is_opted_out(me)})
    if attempt(form, lambda: set_mail_opt_out(me, form.essential_only.data, me)) is not None:
        flash("Saved: you get only essential mail." if form.essential_only.data
              else "Saved: you get all the desk’s mail.")
        return redirect(url_for("me.settings"), code=303)
    return render_template("me/settings.html", form=form), (422 if form.is_submitted() else 200)
