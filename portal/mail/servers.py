"""Outgoing servers: the list in the order the sender tries them, adding and
editing one (the password write-only), deactivating, and Send a test mail,
which goes straight to that server and shows its answer at once."""

from flask import flash, redirect, render_template, url_for

from portal.admin.forms import ConfirmForm
from portal.auth import current_person
from portal.forms import attempt
from portal.htmx import is_htmx
from portal.mail.blueprint import bp
from portal.mail.forms import ServerForm, TestMailForm
from switchboard.db import db
from switchboard.errors import NotFound
from switchboard.outbox.models import OutgoingServer
from switchboard.outbox.servers import add_server, list_servers, send_test_mail, set_server_active, update_server
from switchboard.outbox.smtp import Outcome


@bp.get("/servers")
def servers():
    return render_template("mail/servers.html", servers=list_servers(), confirm=ConfirmForm(formdata=None))


@bp.route("/servers/new", methods=["GET", "POST"])
def new_server():
    form = ServerForm()
    server = attempt(form, lambda: add_server(actor=current_person(), password=form.password.data or None,
                                              **_settings(form)))
    if server is not None:
        flash(f"Server {server.name} added.")
        return redirect(url_for("admin.mail.servers"), code=303)
    return render_template("mail/server.html", form=form, server=None), (422 if form.is_submitted() else 200)


@bp.route("/servers/<int:server_id>", methods=["GET", "POST"])
def server(server_id):
    server = _server(server_id)
    form = ServerForm(data=_current(server), editing=True)
    # Blank keeps the stored password: it is never sent back to the page.
    saved = attempt(form, lambda: update_server(server, actor=current_person(), password=form.password.data or None,
                                                **_settings(form)))
    if saved is not None:
        flash(f"Server {server.name} saved.")
        return redirect(url_for("admin.mail.server", server_id=server.id), code=303)
    return render_template("mail/server.html", form=form, server=server, test_form=_test_form()), (
        422 if form.is_submitted() else 200
    )


@bp.post("/servers/<int:server_id>/<any(deactivate, reactivate):change>")
def set_server(server_id, change):
    server = _server(server_id)
    if attempt(ConfirmForm(), lambda: set_server_active(server.name, change == "reactivate",
                                                        actor=current_person())) is not None:
        flash(f"Server {server.name} {change}d.")
    return redirect(url_for("admin.mail.servers"), code=303)


@bp.post("/servers/<int:server_id>/test")
def test_server(server_id):
    server = _server(server_id)
    form = _test_form(posted=True)
    result = attempt(form, lambda: send_test_mail(server, form.to.data, actor=current_person()))
    if result is None:
        if is_htmx():
            message = " ".join(form.to.errors or form.general_errors)
            return render_template("mail/_report.html", ok=False, message=message), 422
        return render_template("mail/server.html", form=ServerForm(formdata=None, data=_current(server), editing=True),
                               server=server, test_form=form), 422
    ok, message = _report(server, result)
    if is_htmx():
        return render_template("mail/_report.html", ok=ok, message=message)
    flash(message, "message" if ok else "error")
    return redirect(url_for("admin.mail.server", server_id=server.id), code=303)


def _report(server: OutgoingServer, result) -> tuple[bool, str]:
    if result.outcome is Outcome.SENT:
        return True, (f"{server.name} accepted the test mail for {', '.join(result.accepted)}: "
                      f"{result.code} {result.message}")
    stage = f"{result.stage.value} failed" if result.stage else "not sent"
    code = f"{result.code} " if result.code else ""
    return False, f"{server.name} did not take the test mail ({stage}): {code}{result.message}"


def _test_form(*, posted: bool = False) -> TestMailForm:
    if posted:
        return TestMailForm(prefix="test")
    # Most often the admin tries it on their own mailbox first.
    return TestMailForm(prefix="test", formdata=None, data={"to": current_person().email})


def _server(server_id: int) -> OutgoingServer:
    server = db.session.get(OutgoingServer, server_id)
    if server is None:
        raise NotFound("There is no such outgoing server.")
    return server


def _settings(form: ServerForm) -> dict:
    return dict(
        name=form.name.data,
        host=form.host.data,
        port=form.port.data,
        security=form.security.data,
        username=form.username.data,
        trusted_ca_pem=form.trusted_ca_pem.data,
        from_address=form.from_address.data,
        from_name=form.from_name.data,
        priority=form.priority.data,
        timeout_seconds=form.timeout_seconds.data,
    )


def _current(server: OutgoingServer) -> dict:
    return dict(
        name=server.name, host=server.host, port=server.port, security=server.security,
        username=server.username or "", trusted_ca_pem=server.trusted_ca_pem or "",
        from_address=server.from_address, from_name=server.from_name or "", priority=server.priority,
        timeout_seconds=server.timeout_seconds,
    )
