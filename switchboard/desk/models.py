"""DeskSettings: the one row of desk-wide choices an admin makes (the default group)."""

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from switchboard.db import UTCDateTime, db, utcnow

# The row's id: there is only ever this one.
THE_DESK = 1


class DeskSettings(db.Model):
    __tablename__ = "desk_settings"
    __table_args__ = (sa.CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False, default=THE_DESK)
    # Where a call goes when nothing else routes it (an incoming account without a group of
    # its own, a call logged with neither analyst nor group). A group is never deleted, but
    # should one be, the desk falls back to "no default" rather than refusing the delete.
    default_group_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("analyst_group.id", ondelete="SET NULL"))
    updated_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    default_group = relationship("Group")
