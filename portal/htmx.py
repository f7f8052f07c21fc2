"""htmx in the portal: is this request from htmx (then answer with a
fragment), and how a view answers either kind of request.

We read the `HX-Request` header ourselves rather than through htmx-flask: that
package only wraps the same header (and swaps the app's request class to do
it), so one function here is less to carry."""

from flask import request


def is_htmx() -> bool:
    # History restores ask for a full page even when htmx sends them.
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def vary_on_htmx(response):
    """The same URL answers a page or a fragment: caches must tell them apart."""
    response.vary.add("HX-Request")
    return response
