"""The web portal: analysts' and admins' screens, server-rendered with htmx."""

from portal.app import init_portal

__all__ = ["init_portal"]
