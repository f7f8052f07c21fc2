"""Outgoing mail: composing messages, the message-type catalogue and its templates, and
sending through the desk's SMTP servers (the outbox table and sender job build on these)."""
