"""Mail account passwords at rest: Fernet-encrypted with a key derived from
SECRET_KEY (or MAIL_SECRET_KEY when set, so the web secret can rotate alone).
Losing that key means re-entering the mail passwords; nothing else breaks."""

import base64
import os

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from switchboard.errors import InvalidInput


def _fernet() -> Fernet:
    secret = current_app.config.get("MAIL_SECRET_KEY") or os.environ.get("MAIL_SECRET_KEY") or current_app.config["SECRET_KEY"]
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"switchboard-mail-passwords", info=b"fernet").derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(plain: str | None) -> str | None:
    if plain is None or plain == "":
        return None
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str | None) -> str | None:
    if not token:
        return None
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise InvalidInput(
            "The stored mail password cannot be read with this SECRET_KEY/MAIL_SECRET_KEY; enter it again."
        ) from None
