"""Settings: an environment variable wins, then the instance's config file
(`instance/switchboard.toml`, whose keys are the variables' names), then the
default. Every entry point (portal, receiver, scheduler, `flask` commands,
serve.py) reads the same file, so a command run by hand sees what `make run`
chose. The README lists every setting. A test passes a dict of overrides to
the app factory instead."""

import os
import secrets
import socket
import tomllib
from pathlib import Path

CONFIG_FILE = "switchboard.toml"
# The config file's size bound: it is ours, but a wrong path must not read a disk image.
MAX_CONFIG_BYTES = 256 * 1024


class ConfigFileError(SystemExit):
    """A config file that cannot be read: the process stops with this one line
    (a SystemExit, so neither the CLI nor gunicorn prints a traceback for it)."""


def config_path(instance_path: str) -> Path:
    """SWITCHBOARD_CONFIG names another file (tests point it at an empty one)."""
    return Path(os.environ.get("SWITCHBOARD_CONFIG") or Path(instance_path) / CONFIG_FILE)


def read_config_file(instance_path: str) -> dict:
    """The file's settings: upper-case keys with a string, number or true/false;
    {} when there is no file. Anything else stops the process with the reason."""
    path = config_path(instance_path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigFileError(f"switchboard: cannot read {path}: {exc.strerror}")
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigFileError(f"switchboard: {path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        values = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigFileError(f"switchboard: {path} is not valid TOML: {exc}")
    for key, value in values.items():
        if not key.isupper() or not isinstance(value, (str, int, float, bool)):
            raise ConfigFileError(
                f"switchboard: {path}: {key!r} must be an upper-case setting name with a string, number or "
                "true/false (the names are the environment variables' in the README)"
            )
    return values


class Settings:
    """One setting's value: the environment's, else the file's, else the default."""

    def __init__(self, instance_path: str):
        self.file = read_config_file(instance_path)

    def get(self, name: str, default=None):
        value = os.environ.get(name)
        if value not in (None, ""):
            return value
        value = self.file.get(name)
        return default if value in (None, "") else value

    def from_file_only(self) -> dict:
        """The file's settings that no environment variable overrides: put into
        the app's config so the modules that read a setting from the config and
        then the environment (receiver, outbox, limits) see them."""
        return {k: v for k, v in self.file.items() if os.environ.get(k) in (None, "")}


def portal_address(settings: Settings) -> tuple[str, int]:
    return str(settings.get("PORTAL_HOST", "127.0.0.1")), int(settings.get("PORTAL_PORT", 5000))


def default_desk_url(settings: Settings) -> str:
    """Where the portal is, for links in mail, when DESK_URL is not set: the
    portal's own host and port (a wildcard host is replaced by this host's name)."""
    host, port = portal_address(settings)
    if host in ("", "0.0.0.0", "::"):
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _truth(value) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _instance_secret(instance_path: str) -> str:
    """A secret key kept in the instance folder, so `make run` needs no setup
    and sessions survive a restart. Production sets SECRET_KEY instead."""
    path = Path(instance_path) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Written whole under a name of its own, then linked into place: of processes starting at
    # the same moment on a fresh instance (make run's three, test workers), one key wins and
    # the others read it, never a half-written file (they failed with "File exists" before).
    draft = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        try:
            os.link(draft, path)
        except FileExistsError:
            return path.read_text().strip()
    finally:
        draft.unlink(missing_ok=True)
    return key


def default_database_url(instance_path: str) -> str:
    return "sqlite:///" + os.path.join(instance_path, "switchboard.db")


def from_environment(instance_path: str) -> dict:
    settings = Settings(instance_path)
    get = settings.get
    secure = _truth(get("SESSION_COOKIE_SECURE", True))
    return {
        **settings.from_file_only(),
        "SECRET_KEY": get("SECRET_KEY") or _instance_secret(instance_path),
        "SQLALCHEMY_DATABASE_URI": get("DATABASE_URL") or default_database_url(instance_path),
        "DESK_NAME": get("DESK_NAME", "Switchboard"),
        "DESK_URL": str(get("DESK_URL") or default_desk_url(settings)).rstrip("/"),
        # Cookies: HttpOnly and SameSite always; Secure unless explicitly
        # turned off for plain-HTTP local use (make run sets it off).
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": secure,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SECURE": secure,
        "PERMANENT_SESSION_LIFETIME": int(get("SESSION_LIFETIME", 12 * 3600)),
        "LOGIN_RATE_LIMIT": str(get("LOGIN_RATE_LIMIT", "10 per 15 minutes")),
        "RATELIMIT_STORAGE_URI": str(get("RATELIMIT_STORAGE_URI", "memory://")),
        "MAX_CONTENT_LENGTH": int(get("MAX_UPLOAD_BYTES", 25 * 1024 * 1024)),
        # Read here with the domain's settings, not with the receiver's LMTP_* ones: every
        # process that acts on mail (receiver, scheduler sweep, `mail ingest`) needs it.
        "TRUSTED_AUTHSERV_IDS": _names(get("TRUSTED_AUTHSERV_IDS", "")),
    }


def _names(value: str) -> tuple[str, ...]:
    """A comma-separated list of names, lower-case, blanks dropped."""
    return tuple(part.strip().lower() for part in str(value).split(",") if part.strip())
