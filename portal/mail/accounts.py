"""Incoming accounts: the list with each account's state, adding and editing
an account, deactivating it, and Test connection. The domain functions
(switchboard.inbound.accounts) check every setting; their complaint shows
beside the field and nothing is saved."""

from flask import flash, redirect, render_template, url_for

from portal.admin.forms import ConfirmForm
from portal.auth import current_person
from portal.forms import attempt, chosen_group, chosen_person
from portal.htmx import is_htmx
from portal.mail.blueprint import bp
from portal.mail.connection import check_connection
from portal.mail.forms import AccountForm
from switchboard.db import db
from switchboard.errors import NotFound
from switchboard.inbound.accounts import (
    account_state,
    create_account,
    deactivate_account,
    list_accounts,
    reactivate_account,
    update_account,
)
from switchboard.inbound.models import IncomingAccount

# The form's pickers raise with their own short field names, and an LMTP
# address is checked as any email address is.
FIELD_MAP = {"analyst": "default_analyst", "group": "default_group", "email": "addresses"}


@bp.get("/accounts")
def accounts():
    everyone = list_accounts()
    return render_template(
        "mail/accounts.html",
        accounts=everyone,
        states={a.id: account_state(a) for a in everyone},
        confirm=ConfirmForm(formdata=None),
    )


@bp.route("/accounts/new", methods=["GET", "POST"])
def new_account():
    form = AccountForm()
    account = attempt(
        form,
        lambda: create_account(form.name.data, form.protocol.data, actor=current_person(), **_settings(form)),
        field_map=FIELD_MAP,
    )
    if account is not None:
        flash(f"Account {account.name} added.")
        return redirect(url_for("admin.mail.accounts"), code=303)
    return render_template("mail/account.html", form=form, account=None), (422 if form.is_submitted() else 200)


@bp.route("/accounts/<int:account_id>", methods=["GET", "POST"])
def account(account_id):
    account = _account(account_id)
    form = AccountForm(data=_current(account), editing=True)
    saved = attempt(
        form,
        lambda: update_account(
            account, actor=current_person(), name=form.name.data, protocol=form.protocol.data, **_settings(form)
        ),
        field_map=FIELD_MAP,
    )
    if saved is not None:
        flash(f"Account {account.name} saved.")
        return redirect(url_for("admin.mail.account", account_id=account.id), code=303)
    return render_template(
        "mail/account.html", form=form, account=account, state=account_state(account),
        confirm=ConfirmForm(formdata=None),
    ), (422 if form.is_submitted() else 200)


@bp.post("/accounts/<int:account_id>/<any(deactivate, reactivate):change>")
def set_account_active(account_id, change):
    account = _account(account_id)
    change_it = reactivate_account if change == "reactivate" else deactivate_account
    if attempt(ConfirmForm(), lambda: change_it(account, actor=current_person())) is not None:
        flash(f"Account {account.name} {change}d.")
    return redirect(url_for("admin.mail.accounts"), code=303)


@bp.post("/accounts/<int:account_id>/test")
def test_account(account_id):
    """Logs in now (with the account's timeout) and reports; changes nothing."""
    account = _account(account_id)
    report = check_connection(account)
    if is_htmx():
        return render_template("mail/_report.html", ok=report.ok, message=report.message)
    flash(report.message, "message" if report.ok else "error")
    return redirect(url_for("admin.mail.account", account_id=account.id), code=303)


def _account(account_id: int) -> IncomingAccount:
    account = db.session.get(IncomingAccount, account_id)
    if account is None:
        raise NotFound("There is no such incoming account.")
    return account


def _lines(text: str | None) -> list[str]:
    return [part.strip() for line in (text or "").splitlines() for part in line.split(",") if part.strip()]


def _settings(form: AccountForm) -> dict:
    values = dict(
        addresses=_lines(form.addresses.data),
        host=form.host.data,
        port=form.port.data,
        security=form.security.data,
        username=form.username.data,
        # Blank keeps the stored password: it is never sent back to the page.
        password=form.password.data or None,
        trusted_ca_pem=form.trusted_ca_pem.data,
        folder=form.folder.data,
        processed_folder=form.processed_folder.data,
        poll_interval_seconds=form.poll_interval_seconds.data,
        batch_size=form.batch_size.data,
        max_messages_per_session=form.max_messages_per_session.data,
        timeout_seconds=form.timeout_seconds.data,
        allow_new_calls=form.allow_new_calls.data,
        unknown_senders=form.unknown_senders.data,
        default_priority=int(form.default_priority.data) if form.default_priority.data else None,
        default_group=chosen_group(form.default_group.data),
        default_analyst=chosen_person(form.default_analyst.data),
        use_linked_analyst=form.use_linked_analyst.data,
        trusted_submission=form.trusted_submission.data,
    )
    if form.after_processing.data:
        # Left out, the protocol's own default applies (POP3 cannot move).
        values["after_processing"] = form.after_processing.data
    return values


def _current(account: IncomingAccount) -> dict:
    return dict(
        name=account.name,
        protocol=account.protocol.value,
        addresses="\n".join(a.address for a in account.addresses),
        host=account.host or "",
        port=account.port,
        security=account.security.value if account.security else "tls",
        username=account.username or "",
        trusted_ca_pem=account.trusted_ca_pem or "",
        folder=account.folder,
        after_processing=account.after_processing.value if account.after_processing else "",
        processed_folder=account.processed_folder,
        poll_interval_seconds=account.poll_interval_seconds,
        batch_size=account.batch_size,
        max_messages_per_session=account.max_messages_per_session,
        timeout_seconds=account.timeout_seconds,
        allow_new_calls=account.allow_new_calls,
        unknown_senders=account.unknown_senders.value,
        default_priority=str(account.default_priority_id or ""),
        default_group=str(account.default_group_id or ""),
        default_analyst=str(account.default_analyst_id or ""),
        use_linked_analyst=account.use_linked_analyst,
        trusted_submission=account.trusted_submission,
    )
