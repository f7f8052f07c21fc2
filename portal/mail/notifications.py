"""Notification settings: the desk-wide mail switches, and per message type
whether it is sent and to whom. One form for the page; a refused row shows
its message beside it and nothing at all is saved. A second form sets the
limits on automatic replies (switchboard.outbox.limits)."""

from flask import flash, redirect, render_template, url_for

from portal.admin.forms import ConfirmForm
from portal.auth import current_person
from portal.forms import attempt
from portal.mail.blueprint import bp
from portal.mail.forms import ReplyLimitsForm, RuleForm, SwitchesForm
from switchboard.db import db
from switchboard.errors import InvalidInput, NotFound
from switchboard.outbox import catalogue, limits, settings
from switchboard.outbox.catalogue import MessageType
from switchboard.outbox.settings import SWITCHED_TYPES


@bp.route("/notifications", methods=["GET", "POST"])
def notifications():
    switches, rules = _forms()
    if switches.is_submitted():
        valid = all([switches.validate()] + [form.validate() for form in rules.values()])
        if valid and _save(switches, rules):
            flash("Notification settings saved.")
            return redirect(url_for("admin.mail.notifications"), code=303)
        return _page(switches, rules, 422)
    return _page(switches, rules)


@bp.post("/notifications/limits")
def reply_limits():
    form = ReplyLimitsForm(prefix="limits")
    if form.validate():
        try:
            limits.set_limits(current_person(), **{name: form[name].data for name in limits.LIMITS})
        except InvalidInput as exc:
            db.session.rollback()
            form.add_error(exc.field, exc.message)
        else:
            db.session.commit()
            flash("Reply limits saved.")
            return redirect(url_for("admin.mail.notifications") + "#reply-limits", code=303)
    switches, rules = _forms(from_request=False)
    return _page(switches, rules, 422, reply_limits=form)


def _forms(from_request: bool = True):
    """The switches and per-type forms, filled from what is saved (and from the request's data
    when `from_request`)."""
    extra = {} if from_request else {"formdata": None}
    switches = SwitchesForm(prefix="switch", data=settings.switches(), **extra)
    rules = {}
    for rule in settings.notification_rules():
        number = int(rule.type)
        rules[number] = RuleForm(prefix=f"t{number}", data={
            "enabled": rule.enabled, "recipients": [r.value for r in rule.recipients]}, **extra)
    return switches, rules


@bp.post("/notifications/<int:number>/reset")
def notification_reset(number):
    try:
        info = catalogue.get(number)
    except KeyError:
        raise NotFound("There is no such message type.") from None
    if attempt(ConfirmForm(), lambda: settings.reset_notification(info.type, current_person())) is not None:
        flash(f"“{info.title}” is back to its defaults.")
    return redirect(url_for("admin.mail.notifications"), code=303)


def _save(switches: SwitchesForm, rules: dict) -> bool:
    """Saves what changed, all or nothing."""
    me = current_person()
    failed = False
    current = settings.switches()
    for name in current:
        wanted = bool(getattr(switches, name).data)
        if wanted != current[name]:
            settings.set_switch(name, wanted, me)
    for rule in settings.notification_rules():
        form = rules[int(rule.type)]
        enabled = bool(form.enabled.data)
        chosen = tuple(form.recipients.data or ())
        if enabled == rule.enabled and set(chosen) == {r.value for r in rule.recipients}:
            continue  # untouched rows keep following the catalogue's defaults
        try:
            # A message turned off may keep its recipients for when it is turned on again.
            settings.set_notification(rule.type, me, enabled=enabled,
                                      recipients=chosen if chosen or enabled else None)
        except InvalidInput as exc:
            form.add_error("recipients", exc.message)
            failed = True
    if failed:
        db.session.rollback()
        return False
    db.session.commit()
    return True


def _page(switches, rules, status=200, reply_limits=None):
    gated = {int(t): name for name, types in SWITCHED_TYPES.items() for t in types}
    rows = []
    for message_type in MessageType:
        rule = settings.notification_rule(message_type)
        rows.append({"info": catalogue.get(message_type), "form": rules[int(message_type)],
                     "customised": rule.customised, "switch": gated.get(int(message_type))})
    return render_template(
        "mail/notifications.html", switches=switches, rows=rows, labels=settings.SWITCH_LABELS,
        confirm=ConfirmForm(formdata=None),
        reply_limits=reply_limits or ReplyLimitsForm(prefix="limits", formdata=None, data=limits.limits()),
    ), status
