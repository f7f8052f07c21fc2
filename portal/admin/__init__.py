"""Admin pages: people, groups and their members, priority names. Only
admins get in; the check is the blueprint's, so no page can forget it."""

from portal.admin.views import bp

__all__ = ["bp"]
