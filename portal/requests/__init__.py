"""Requests in the portal: the list, raising a request with its tasks, and a
request's page with its tasks, their timelines and decisions."""

from portal.requests.views import bp

__all__ = ["bp"]
