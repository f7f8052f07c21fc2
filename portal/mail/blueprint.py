"""The mail admin blueprint. It is registered inside the admin blueprint
(portal/admin/__init__.py), so the admin check there runs first for every
page here: there is no second check to forget."""

from flask import Blueprint

bp = Blueprint("mail", __name__, url_prefix="/mail")

PAGE_SIZE = 50
