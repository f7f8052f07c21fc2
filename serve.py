"""`make run`'s last step: starts the portal, the receiver and the scheduler
as child processes in the foreground. Ctrl-C (or SIGTERM) stops all of them;
if one dies, the others are stopped too, so nothing runs half-alive."""

import os
import signal
import subprocess
import sys
import time

FLASK = [sys.executable, "-m", "flask", "--app", "wsgi"]


def processes() -> dict[str, list[str]]:
    host = os.environ.get("PORTAL_HOST", "127.0.0.1")
    port = os.environ.get("PORTAL_PORT", "5000")
    return {
        # gunicorn, not Flask's development server; one worker so the login
        # rate limit (memory storage by default) counts every attempt. 16 threads:
        # with 8 every thread could be busy with a template preview (each up to the
        # render budget's 1 s), and the next page would wait for one to free up.
        "portal": [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers", "1",
                   "--threads", "16", "--access-logfile", "-", "wsgi:create_app()"],
        "receiver": FLASK + ["receiver", "run"],
        "scheduler": FLASK + ["scheduler", "run"],
    }


def main() -> int:
    children = {name: subprocess.Popen(cmd) for name, cmd in processes().items()}
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"Switchboard running: {', '.join(children)}. Ctrl-C stops everything.", flush=True)
    status = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"{name} exited with {child.returncode}; stopping the others.", file=sys.stderr)
                status = child.returncode or 1
                stopping = True
        time.sleep(0.2)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    return status


if __name__ == "__main__":
    sys.exit(main())
