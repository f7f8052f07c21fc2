"""Mail in: the LMTP server, the IMAP and POP3 pollers and `mail ingest`.
Every path stores the raw message first and hands it to switchboard.inbound."""

import os

# Settings read from the environment unless the app config sets them (tests, the config file).
DEFAULTS = {
    "LMTP_HOST": ("127.0.0.1", str),
    "LMTP_PORT": (8024, int),
    # A 25 MiB attachment grows by a third in base64; Postfix's own default limit is 10 MB.
    "LMTP_MAX_MESSAGE_BYTES": (35 * 1024 * 1024, int),
    # Recipients accepted per transaction; past it RCPT answers 452 4.5.3 and
    # the MTA sends the rest in another transaction (one mail cannot fan out without end).
    "LMTP_MAX_RECIPIENTS": (100, int),
    # Threads that look recipients up for the LMTP server, and on PostgreSQL
    # also the number of threads storing (SQLite: one, it has one write lock).
    "LMTP_DB_THREADS": (4, int),
    # After acknowledging, stored messages are acted on this many per transaction
    # (0: the default, 10) while mail arrives, and up to five times as many once
    # none has arrived for a second. Acting on a batch together costs half as
    # much per message as one at a time; on SQLite the transaction holds the
    # file's only write lock, which storing then waits for, so batches stay small
    # while storing. The sweep catches anything left new (a crash, a restart).
    "RECEIVER_PROCESS_BATCH": (0, int),
    # Processes (forked from the receiver) that act on stored mail, so acting
    # runs on other cores than receiving (on SQLite they parse at once and take
    # turns to write); 0 acts in a thread of the receiver.
    "RECEIVER_PROCESSES": (2, int),
    "RECEIVER_SWEEP_SECONDS": (60, float),
}


def settings_from_environment(app) -> None:
    """The app's config (a test's override, or the instance config file), else
    the environment, else the default; the file wins only where the environment
    is silent (switchboard.config put it in the config only then)."""
    for name, (default, kind) in DEFAULTS.items():
        value = app.config.get(name)
        if value in (None, ""):
            value = os.environ.get(name)
        app.config[name] = kind(value) if value not in (None, "") else default


def process_batch_size(app) -> int:
    size = app.config["RECEIVER_PROCESS_BATCH"]
    return size if size > 0 else 10


def init_receiver(app) -> None:
    """Reads the receiver's settings and registers `receiver run` and the `mail ...` commands."""
    settings_from_environment(app)
    from receiver.cli import register

    register(app)
