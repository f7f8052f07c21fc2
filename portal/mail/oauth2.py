"""OAuth2 sign-in for an incoming account or an outgoing server: its provider and app
settings (the client secret write-only), the grant's state and token expiry (never a
token), and "Connect", the delegated flow's round trip through the provider's sign-in page."""

from urllib.parse import urlsplit

from flask import flash, make_response, redirect, render_template, request, session, url_for

from portal.app import CONTENT_SECURITY_POLICY
from portal.auth import current_person
from portal.forms import attempt
from portal.mail.blueprint import bp
from portal.mail.forms import OAuth2Form
from switchboard.db import db
from switchboard.errors import InvalidInput, NotFound
from switchboard.inbound.models import IncomingAccount
from switchboard.oauth import connect
from switchboard.oauth.grants import save_grant, state_words
from switchboard.oauth.models import OAuthGrant
from switchboard.outbox.models import OutgoingServer

OWNERS = {"accounts": IncomingAccount, "servers": OutgoingServer}
# The admin's session keeps one sign-in in flight: state, PKCE verifier, grant.
PENDING = "oauth2_connect"


def _owner(kind: str, owner_id: int):
    owner = db.session.get(OWNERS[kind], owner_id)
    if owner is None:
        raise NotFound("There is no such account or server.")
    return owner


def _url(kind: str, owner_id: int, action: str = "") -> str:
    endpoint = {"accounts": "admin.mail.account_oauth2", "servers": "admin.mail.server_oauth2"}[kind] + action
    return url_for(endpoint, **{("account_id" if kind == "accounts" else "server_id"): owner_id})


def _back(kind: str, owner_id: int):
    return redirect(_url(kind, owner_id), code=303)


def _kind(account_id, server_id) -> tuple[str, int]:
    return ("accounts", account_id) if account_id is not None else ("servers", server_id)


@bp.route("/accounts/<int:account_id>/oauth2", methods=["GET", "POST"], endpoint="account_oauth2")
@bp.route("/servers/<int:server_id>/oauth2", methods=["GET", "POST"], endpoint="server_oauth2")
def oauth2(account_id=None, server_id=None):
    kind, owner_id = _kind(account_id, server_id)
    owner = _owner(kind, owner_id)
    grant = owner.oauth_grant
    current = {name: getattr(grant, name) for name in ("tenant_id", "client_id", "token_endpoint",
                                                      "authorization_endpoint", "scopes")} if grant else {}
    if grant is not None:
        current.update(provider=grant.provider.value, flow=grant.flow.value)
    form = OAuth2Form(data=current)
    saved = attempt(form, lambda: save_grant(
        owner, actor=current_person(), provider=form.provider.data, flow=form.flow.data,
        client_id=form.client_id.data, client_secret=form.client_secret.data or None,
        tenant_id=form.tenant_id.data, token_endpoint=form.token_endpoint.data,
        authorization_endpoint=form.authorization_endpoint.data, scopes=form.scopes.data))
    if saved is not None:
        flash("OAuth2 settings saved." + (" Now connect it." if saved.flow.value == "delegated" else ""))
        return _back(kind, owner_id)
    response = make_response(render_template(
        "mail/oauth2.html", form=form, owner=owner, kind=kind, grant=grant, state=state_words(grant),
        page_url=_url(kind, owner_id), connect_url=_url(kind, owner_id, "_connect")),
        422 if form.is_submitted() else 200)
    _allow_connect(response, grant)
    return response


def _allow_connect(response, grant) -> None:
    """The page's policy lets its Connect form lead to the provider's sign-in page (browsers
    apply form-action to where a form's answer redirects) and nowhere else."""
    if grant is None or grant.flow.value != "delegated":
        return
    try:
        target = urlsplit(connect.endpoints(grant).authorize)
    except InvalidInput:
        return
    if target.scheme == "https" and target.netloc:
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
            "form-action 'self'", f"form-action 'self' https://{target.netloc}")


@bp.post("/accounts/<int:account_id>/oauth2/connect", endpoint="account_oauth2_connect")
@bp.post("/servers/<int:server_id>/oauth2/connect", endpoint="server_oauth2_connect")
def oauth2_connect(account_id=None, server_id=None):
    kind, owner_id = _kind(account_id, server_id)
    owner = _owner(kind, owner_id)
    form = OAuth2Form()  # only its CSRF token is read here
    if not form.validate_on_submit() or owner.oauth_grant is None:
        flash("Save the OAuth2 settings first.", "error")
        return _back(kind, owner_id)
    try:
        url, pending = connect.start(owner.oauth_grant, url_for("admin.mail.oauth2_callback", _external=True))
    except InvalidInput as exc:
        flash(exc.message, "error")
        return _back(kind, owner_id)
    session[PENDING] = {**pending, "kind": kind, "owner": owner_id}
    return redirect(url, code=303)


@bp.get("/oauth2/callback")
def oauth2_callback():
    """Where the provider sends the admin back; the state in their session must match."""
    pending = session.pop(PENDING, None) or {}
    kind, owner_id = pending.get("kind"), pending.get("owner")
    grant = db.session.get(OAuthGrant, pending["grant"]) if pending.get("grant") else None
    if grant is None or kind not in OWNERS:
        flash("This sign-in was not started here, or has already been used: connect again.", "error")
        return redirect(url_for("admin.mail.accounts"), code=303)
    try:
        connect.finish(grant, pending, state=request.args.get("state"), code=request.args.get("code"),
                       error=request.args.get("error_description") or request.args.get("error"))
        db.session.commit()
        flash("Connected: the desk keeps this sign-in and renews its tokens itself.")
    except InvalidInput as exc:
        db.session.rollback()
        flash(exc.message, "error")
    return _back(kind, owner_id)
