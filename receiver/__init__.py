"""Mail in: the LMTP server, the IMAP and POP3 pollers and `mail ingest`.
Every path stores the raw message first and hands it to switchboard.inbound."""


def init_receiver(app) -> None:
    """Registers the receiver's commands (none yet: the incoming-mail issue adds them)."""
