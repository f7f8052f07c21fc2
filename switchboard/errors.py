"""Errors the services raise. Each carries a message fit to show a user (in a
form, a page or a rejection mail); none of them carries a traceback to users."""


class DeskError(Exception):
    """Base of every error a service raises on purpose."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field  # the form field the error belongs to, if any


class NotFound(DeskError):
    pass


class PermissionDenied(DeskError):
    pass


class InvalidInput(DeskError):
    pass


class InvalidTransition(DeskError):
    """The record is in a state where this action makes no sense."""
