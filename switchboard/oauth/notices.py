"""Telling the admins, once, that a grant needs reconnecting: one "Mailbox needs reconnecting"
mail per refusal, however many polls or sends meet it afterwards. The claim is one UPDATE
that only the first caller wins (`reconnect_notice_at IS NULL`), so two processes noticing
at once send one mail. Reconnecting clears it (tokens.reconnected) for the next refusal."""

from __future__ import annotations

import sqlalchemy as sa
from flask import current_app

from switchboard.db import db, utcnow
from switchboard.oauth.models import GrantState, OAuthGrant


def notify_refused_grants() -> int:
    """Queues the notice for every refused grant not yet announced; the caller commits.
    Returns how many grants were announced."""
    from switchboard.inbound.models import IncomingAccount
    from switchboard.outbox import settings
    from switchboard.outbox.catalogue import MessageType
    from switchboard.outbox.notify import people_for, queue_notification

    waiting = db.session.scalars(sa.select(OAuthGrant).where(
        OAuthGrant.state == GrantState.NEEDS_RECONNECTING, OAuthGrant.reconnect_notice_at.is_(None))).all()
    announced = 0
    for grant in waiting:
        claimed = db.session.execute(
            sa.update(OAuthGrant).where(OAuthGrant.id == grant.id, OAuthGrant.reconnect_notice_at.is_(None))
            .values(reconnect_notice_at=utcnow()).execution_options(synchronize_session=False)).rowcount
        if claimed != 1:
            continue
        announced += 1
        if not settings.mail_wanted(MessageType.MAILBOX_NEEDS_RECONNECTING):
            continue
        base = str(current_app.config.get("DESK_URL") or "").rstrip("/")
        account = db.session.scalar(sa.select(IncomingAccount).where(IncomingAccount.oauth_grant_id == grant.id))
        if account is not None:
            name, kind, url = account.name, "incoming account", f"{base}/admin/mail/accounts/{account.id}"
        else:
            from switchboard.outbox.models import OutgoingServer

            server = db.session.scalar(sa.select(OutgoingServer).where(OutgoingServer.oauth_grant_id == grant.id))
            if server is None:
                continue  # a grant nothing uses any more
            name, kind, url = server.name, "outgoing server", f"{base}/admin/mail/servers/{server.id}"
        rule = settings.notification_rule(MessageType.MAILBOX_NEEDS_RECONNECTING)
        queue_notification(
            MessageType.MAILBOX_NEEDS_RECONNECTING, people_for(rule.recipients, None), record=None,
            variables={"mailbox": {"name": name, "kind": kind, "provider": grant.provider.value},
                       "error": grant.last_error or "", "settings_url": url})
    return announced
