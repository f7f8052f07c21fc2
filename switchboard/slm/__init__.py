"""Service level management: business calendars, SLAs, the call clock and the escalation sweep."""
