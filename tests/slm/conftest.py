"""Helpers for the service level tests: an SLA made through the admin services."""

from datetime import datetime, timezone

import pytest

from switchboard.db import db
from switchboard.slm import admin
from switchboard.slm.admin import LevelSpec
from switchboard.slm.models import Target


@pytest.fixture
def make_sla(people):
    def make(*, calendar_id=None, response=None, fix=None, priority_id=3, levels=(50, 75, 90), name="Standard",
             default=True, **level_options):
        specs = [LevelSpec(p, **level_options) for p in levels]
        sla = admin.save_sla(people["admin"], name, calendar_id=calendar_id, targets={priority_id: (response, fix)},
                             levels={Target.RESPONSE: specs, Target.FIX: specs}, is_default=default)
        db.session.commit()
        return sla

    return make


@pytest.fixture
def office(people):
    calendar = admin.save_calendar(people["admin"], "London office", "Europe/London",
                                   {d: "09:00-17:00" for d in range(5)}, [])
    db.session.commit()
    return calendar


def utc(*fields) -> datetime:
    return datetime(*fields, tzinfo=timezone.utc)
