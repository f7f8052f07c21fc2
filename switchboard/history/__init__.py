"""The timeline of every call, request and task, with attachments."""
