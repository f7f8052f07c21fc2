"""Calls in the portal: the list, logging a call, and a call's page with its
timeline and everything an analyst does to it."""

from portal.calls.views import bp

__all__ = ["bp"]
