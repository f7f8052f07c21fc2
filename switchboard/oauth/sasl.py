"""The SASL strings that carry an access token to a mail server: XOAUTH2 (Google's and
Microsoft's) and OAUTHBEARER (RFC 7628), and which of them a server's advertised mechanisms
let us use. Built here once for IMAP, POP3 and SMTP alike."""

XOAUTH2 = "XOAUTH2"
OAUTHBEARER = "OAUTHBEARER"


def xoauth2(user: str, token: str) -> bytes:
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def oauthbearer(user: str, token: str, host: str, port: int) -> bytes:
    # RFC 7628 section 3.1: a GS2 header naming the user (',' and '=' escaped, RFC 5801),
    # then key=value pairs each ended by ^A.
    name = user.replace("=", "=3D").replace(",", "=2C")
    return f"n,a={name},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01".encode()


def choose(advertised) -> str | None:
    """XOAUTH2 where offered (Microsoft offers only it), else OAUTHBEARER, else None."""
    names = {str(m).upper() for m in advertised}
    if XOAUTH2 in names:
        return XOAUTH2
    if OAUTHBEARER in names:
        return OAUTHBEARER
    return None


def initial_response(mechanism: str, user: str, token: str, host: str, port: int) -> bytes:
    if mechanism == XOAUTH2:
        return xoauth2(user, token)
    return oauthbearer(user, token, host, port)
