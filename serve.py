"""`make run`'s runner: writes the instance config file on first start
(`serve.py --write-config`), then starts the portal, the receiver and the
scheduler as children and supervises them in the foreground.

Each child runs in a process group of its own, so Ctrl-C at the terminal
reaches only this runner (and make), never the children directly: the
portal's gunicorn worker used to get SIGINT from the terminal and SIGQUIT
from its master at once and deadlock in its shutdown, orphaned on the port.
The runner stops the children itself, and ends every process of their groups
within 10 s whatever they do. It stops them too when one of them dies, or
when its own parent (make) goes away."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
INSTANCE = ROOT / "instance"
FLASK = [sys.executable, "-m", "flask", "--app", "wsgi"]
# Every child gets SIGTERM and this long to finish; then its whole group is killed. Short
# enough that the whole stop stays within 10 s on a loaded machine (an acting process killed
# mid-transaction loses nothing: it rolls back and the next start acts on that mail).
STOP_SECONDS = 6.0

sys.path.insert(0, str(ROOT))
from switchboard import config  # noqa: E402  (needs ROOT on the path when run as a script)


def processes(settings: config.Settings | None = None) -> dict[str, list[str]]:
    host, port = config.portal_address(settings or config.Settings(str(INSTANCE)))
    return {
        # gunicorn, not Flask's development server; one worker so the login
        # rate limit (memory storage by default) counts every attempt. 16 threads:
        # with 8 every thread could be busy with a template preview (each up to the
        # render budget's 1 s), and the next page would wait for one to free up.
        # No control socket: gunicorn's default is one per user in the home folder,
        # shared by every gunicorn of that user on the host.
        "portal": [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers", "1",
                   "--threads", "16", "--graceful-timeout", "5", "--no-control-socket",
                   "--access-logfile", "-", "wsgi:create_app()"],
        "receiver": FLASK + ["receiver", "run"],
        "scheduler": FLASK + ["scheduler", "run"],
    }


def first_start_settings() -> dict:
    """What `make run` chooses on first start: the environment's values where
    set, else the defaults, written down so every later command agrees."""
    settings = config.Settings(str(INSTANCE))
    host, port = config.portal_address(settings)
    return {
        "PORTAL_HOST": host,
        "PORTAL_PORT": port,
        "DESK_URL": str(settings.get("DESK_URL") or config.default_desk_url(settings)),
        "MAIL_DOMAIN": str(settings.get("MAIL_DOMAIN", "switchboard.local")),
        "LMTP_HOST": str(settings.get("LMTP_HOST", "127.0.0.1")),
        "LMTP_PORT": int(settings.get("LMTP_PORT", 8024)),
        "DATABASE_URL": str(settings.get("DATABASE_URL") or config.default_database_url(str(INSTANCE))),
        # Plain HTTP on loopback: a cookie marked Secure would never come back.
        "SESSION_COOKIE_SECURE": config._truth(settings.get("SESSION_COOKIE_SECURE", False)),
    }


def write_config() -> int:
    import tomli_w

    path = config.config_path(str(INSTANCE))
    if path.exists():
        print(f"Settings: {path} (environment variables override it)")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    body = tomli_w.dumps(first_start_settings())
    header = (
        "# Switchboard's settings, written by `make run` on first start. Every entry point reads\n"
        "# this file (portal, receiver, scheduler, `flask --app wsgi ...`); an environment variable\n"
        "# of the same name overrides a line. The README's Configuration section lists them all.\n"
    )
    # 0600: a DATABASE_URL may carry a password.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(header + body)
    print(f"Settings written to {path}:")
    print(body, end="")
    return 0


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def stop_children(children: dict[str, subprocess.Popen]) -> None:
    """SIGTERM to each child, STOP_SECONDS to exit, then SIGKILL to whatever is
    left in its process group (a worker its master abandoned included)."""
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for name, child in children.items():
        try:
            child.wait(timeout=max(0.05, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop within {STOP_SECONDS:.0f} s; killing it.", file=sys.stderr, flush=True)
    for child in children.values():
        _signal_group(child.pid, signal.SIGKILL)
        if child.poll() is None:
            child.wait()


def main() -> int:
    settings = config.Settings(str(INSTANCE))
    parent = os.getppid()
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    # process_group=0: each child leads a group of its own, out of the terminal's
    # foreground group, so only this runner decides how they stop.
    children = {name: subprocess.Popen(cmd, process_group=0) for name, cmd in processes(settings).items()}
    print(f"Switchboard running: {', '.join(children)}. Ctrl-C stops everything.", flush=True)
    status = 0
    try:
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"{name} exited with {child.returncode}; stopping the others.", file=sys.stderr)
                    status = child.returncode or 1
                    stopping = True
            if os.getppid() != parent:
                print("make is gone; stopping.", file=sys.stderr)
                stopping = True
            time.sleep(0.2)
    finally:
        # Signals again while stopping change nothing: stop_children always ends within its bound.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_children(children)
    print("Switchboard stopped.", flush=True)
    return status


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-config"]:
        sys.exit(write_config())
    sys.exit(main())
