"""The desk's health: each scheduler job's heartbeat, each polled account's last
poll and the outbox's oldest due mail, for the admin's health page and
`flask --app wsgi desk health`."""
