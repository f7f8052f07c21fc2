"""People (one per email address) and the groups analysts work in."""
