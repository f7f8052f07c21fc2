"""Settings, read from environment variables (the README lists every one).

A test passes a dict of overrides to the app factory instead."""

import os
import secrets
from pathlib import Path


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _instance_secret(instance_path: str) -> str:
    """A secret key kept in the instance folder, so `make run` needs no setup
    and sessions survive a restart. Production sets SECRET_KEY instead."""
    path = Path(instance_path) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


def from_environment(instance_path: str) -> dict:
    database_url = os.environ.get("DATABASE_URL") or (
        "sqlite:///" + os.path.join(instance_path, "switchboard.db")
    )
    return {
        "SECRET_KEY": os.environ.get("SECRET_KEY") or _instance_secret(instance_path),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "DESK_NAME": os.environ.get("DESK_NAME", "Switchboard"),
        # Cookies: HttpOnly and SameSite always; Secure unless explicitly
        # turned off for plain-HTTP local use (make run sets it off).
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _bool("SESSION_COOKIE_SECURE", True),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SECURE": _bool("SESSION_COOKIE_SECURE", True),
        "PERMANENT_SESSION_LIFETIME": int(os.environ.get("SESSION_LIFETIME", 12 * 3600)),
        "LOGIN_RATE_LIMIT": os.environ.get("LOGIN_RATE_LIMIT", "10 per 15 minutes"),
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        "MAX_CONTENT_LENGTH": int(os.environ.get("MAX_UPLOAD_BYTES", 25 * 1024 * 1024)),
        # Read here with the domain's settings, not with the receiver's LMTP_* ones: every
        # process that acts on mail (receiver, scheduler sweep, `mail ingest`) needs it.
        "TRUSTED_AUTHSERV_IDS": _names("TRUSTED_AUTHSERV_IDS"),
    }


def _names(name: str) -> tuple[str, ...]:
    """A comma-separated list of names, lower-case, blanks dropped."""
    return tuple(part.strip().lower() for part in os.environ.get(name, "").split(",") if part.strip())
