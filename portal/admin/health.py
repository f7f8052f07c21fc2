"""The admin's health page: each scheduler job's heartbeat, each polled
account's last poll, the outbox's oldest due mail (what `desk health` prints).
Admins only: the admin blueprint's check covers it."""

from flask import render_template

from portal.admin.views import bp
from switchboard.health.report import desk_health


@bp.get("/health")
def health():
    return render_template("admin/health.html", report=desk_health())
