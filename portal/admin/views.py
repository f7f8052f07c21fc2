"""Admin pages. The blueprint's `before_request` refuses everyone who is not
an admin (403); the services check again."""

import sqlalchemy as sa
from wtforms.fields.choices import SelectChoice
from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for

from portal.auth import current_person
from portal.admin.forms import ConfirmForm, DefaultGroupForm, GroupForm, MemberForm, NewPersonForm, PriorityNameForm
from portal.forms import attempt
from portal.pagination import paginate
from switchboard.calls.admin import priorities, rename_priority
from switchboard.db import db
from switchboard.desk.routing import default_group, set_default_group
from switchboard.errors import InvalidInput
from switchboard.people.admin import add_group, add_member, add_person, get_group, remove_member, set_active
from switchboard.people.models import Group, Person
from switchboard.outbox.settings import opted_out_ids, set_mail_opt_out
from switchboard.people.services import analysts, get_person
from switchboard.permissions import require

bp = Blueprint("admin", __name__, url_prefix="/admin")

PAGE_SIZE = 100


@bp.before_request
def admins_only():
    # The app's login check runs first, so there is always a person here.
    require(current_person(), "admin")


@bp.get("/")
def index():
    return redirect(url_for("admin.people"))


@bp.get("/people")
def people():
    text = request.args.get("q", "").strip()[:200]
    query = sa.select(Person).order_by(Person.active.desc(), Person.is_customer, Person.name, Person.email)
    if text:
        query = query.where(
            sa.or_(Person.email.icontains(text, autoescape=True), Person.name.icontains(text, autoescape=True))
        )
    found = paginate(query, PAGE_SIZE)
    everyone = found.items
    return render_template(
        "admin/people.html",
        people=everyone,
        **found.template_args(),
        q=text,
        essential_only=opted_out_ids(p.id for p in everyone),
        confirm=ConfirmForm(formdata=None),
    )


@bp.route("/people/new", methods=["GET", "POST"])
def new_person():
    form = NewPersonForm()
    person = attempt(
        form,
        lambda: add_person(
            current_person(),
            form.email.data,
            form.name.data or "",
            analyst=form.analyst.data,
            admin=form.admin.data,
            customer=form.customer.data,
            password=form.password.data or None,
        ),
    )
    if person is not None:
        flash(f"{person.email} added.")
        return redirect(url_for("admin.people"), code=303)
    return render_template("admin/person_new.html", form=form), (422 if form.is_submitted() else 200)


@bp.post("/people/<int:person_id>/<any(deactivate, reactivate):change>")
def set_person_active(person_id, change):
    person = get_person(person_id)
    form = ConfirmForm()
    if attempt(form, lambda: set_active(current_person(), person, change == "reactivate")) is not None:
        flash(f"{person.email} {change}d.")
    else:
        for message in form.general_errors:
            flash(message, "error")
    return redirect(url_for("admin.people"), code=303)


@bp.post("/people/<int:person_id>/mail/<any(essential, all):choice>")
def set_person_mail(person_id, choice):
    """The opt-out a person can set on their own settings page, set for them."""
    person = get_person(person_id)
    if attempt(ConfirmForm(), lambda: set_mail_opt_out(person, choice == "essential", current_person())) is not None:
        flash(f"{person.email} now gets {'only essential' if choice == 'essential' else 'all the desk’s'} mail.")
    return redirect(url_for("admin.people", q=request.args.get("q") or None), code=303)


@bp.route("/groups", methods=["GET", "POST"])
def groups():
    form = GroupForm()
    group = attempt(form, lambda: add_group(current_person(), form.name.data, form.email.data))
    if group is not None:
        flash(f"Group {group.name} added.")
        return redirect(url_for("admin.group", group_id=group.id), code=303)
    return _render_groups(form=form, status=422 if form.is_submitted() else 200)


@bp.post("/groups/default")
def set_default():
    form = _default_group_form()
    gathered = attempt(form, lambda: set_default_group(current_person(), _chosen_group(form.group.data)))
    if gathered is not None:
        flash(f"New calls that nothing else routes now go to {default_group().name}."
              + (f" {gathered} call{'' if gathered == 1 else 's'} without a group moved there." if gathered else ""))
        return redirect(url_for("admin.groups"), code=303)
    return _render_groups(default_form=form, status=422)


def _chosen_group(value) -> Group:
    group = db.session.get(Group, int(value)) if value and value.isdigit() else None
    if group is None:
        raise InvalidInput("Choose a group.", field="group")
    return group


def _default_group_form(**kwargs) -> DefaultGroupForm:
    form = DefaultGroupForm(**kwargs)
    # No blank choice once there is a default: the desk always routes somewhere.
    form.group.choices = ([] if default_group() else [SelectChoice("", "— choose —")]) + [
        SelectChoice(str(g.id), g.name) for g in db.session.scalars(
            sa.select(Group).where(Group.active).order_by(Group.name))]
    return form


def _render_groups(*, form=None, default_form=None, status=200):
    everyone = db.session.scalars(sa.select(Group).order_by(Group.name)).all()
    current = default_group()
    if default_form is None:
        default_form = _default_group_form(formdata=None, data={"group": str(current.id) if current else ""})
    return render_template(
        "admin/groups.html", groups=everyone, form=form or GroupForm(formdata=None),
        default_form=default_form, default_group=current,
    ), status


@bp.route("/groups/<int:group_id>", methods=["GET", "POST"])
def group(group_id):
    group = get_group(group_id)
    form = MemberForm()
    form.person.choices = [SelectChoice("", "— choose —")] + [
        SelectChoice(str(p.id), p.display_name) for p in analysts() if p not in group.members
    ]
    added = attempt(form, lambda: add_member(current_person(), group, _chosen_analyst(form.person.data)))
    if added is not None:
        flash("Member added.")
        return redirect(url_for("admin.group", group_id=group.id), code=303)
    return render_template("admin/group.html", group=group, form=form, confirm=ConfirmForm(formdata=None)), (
        422 if form.is_submitted() else 200
    )


@bp.post("/groups/<int:group_id>/members/<int:person_id>/remove")
def remove(group_id, person_id):
    group, person = get_group(group_id), get_person(person_id)
    form = ConfirmForm()
    if attempt(form, lambda: remove_member(current_person(), group, person)) is not None:
        flash(f"{person.display_name} removed from {group.name}.")
    else:
        for message in form.general_errors:
            flash(message, "error")
    return redirect(url_for("admin.group", group_id=group.id), code=303)


def _chosen_analyst(value):
    if not value:
        raise InvalidInput("Choose an analyst.", field="person")
    return get_person(int(value))


@bp.get("/priorities")
def priority_names():
    return _render_priorities()


@bp.post("/priorities/<int:priority_id>")
def rename(priority_id):
    form = PriorityNameForm(prefix=f"p{priority_id}")
    if attempt(form, lambda: rename_priority(current_person(), priority_id, form.name.data)) is not None:
        flash("Priority renamed.")
        return redirect(url_for("admin.priority_names"), code=303)
    return _render_priorities(posted=(priority_id, form), status=422)


def _render_priorities(posted=None, status=200):
    rows = []
    for priority in priorities():
        if posted and posted[0] == priority.id:
            form = posted[1]
        else:
            form = PriorityNameForm(prefix=f"p{priority.id}", formdata=None, data={"name": priority.name})
        form.name.label.text = f"Priority {priority.id}"
        rows.append((priority, form))
    return make_response(render_template("admin/priorities.html", rows=rows), status)
