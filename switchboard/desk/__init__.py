"""The desk as a whole: settings that belong to no one feature (where unrouted calls go)."""
