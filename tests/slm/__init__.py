"""Service level management: business time, the call clock, the sweep."""
