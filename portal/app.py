"""Adds the web side to the app: login, CSRF, rate limits, error pages and
the feature blueprints."""

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from portal.auth import login_manager, limiter

csrf = CSRFProtect()


def init_portal(app: Flask) -> None:
    csrf.init_app(app)
    login_manager.init_app(app)
    limiter.init_app(app)

    from portal import auth, errors

    app.register_blueprint(auth.bp)
    errors.register(app)
