"""The portal's browser-like fixtures (real login form, CSRF tokens from the
pages) and the receiver's real LMTP server, shared with the security tests."""

from tests.portal.conftest import _fresh_g_per_request, client, login, portal, smtp_sink  # noqa: F401
from tests.receiver.conftest import desk_accounts, receiver  # noqa: F401
