"""Admin pages: people, groups and their members, priority names, and the
mail settings (portal.mail, nested here). Only admins get in; the check is
this blueprint's, so no page can forget it, nested ones included."""

from portal.admin.views import bp
from portal.admin import health  # noqa: F401  (the health page, on bp)
from portal.admin import slm  # noqa: F401  (calendars and SLAs, on bp)
from portal.mail import bp as mail_bp

# Once per process, at import: a blueprint cannot change after an app registered it.
bp.register_blueprint(mail_bp)

__all__ = ["bp"]
