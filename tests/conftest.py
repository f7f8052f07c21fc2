"""Test fixtures. Every test that asks for `app` (or anything built on it)
runs twice: on SQLite and on PostgreSQL.

PostgreSQL is the one this machine kind starts on 127.0.0.1:5432 (trust
auth, database `test`); each pytest-xdist worker gets its own database.
Under CI=true an unreachable PostgreSQL fails the run instead of skipping."""

import os

import psycopg
import pytest
import sqlalchemy as sa

from switchboard.db import db

# Real Dovecot, Postfix and a throwaway CA, started over loopback (tests/servers).
pytest_plugins = ["tests.servers.fixtures"]

IN_CI = os.environ.get("CI", "").lower() == "true"
# A developer's instance/switchboard.toml (written by `make run`) must not change what the
# suite sees; the processes tests start inherit this. Tests of the file set their own.
os.environ["SWITCHBOARD_CONFIG"] = os.devnull
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = [b.strip() for b in os.environ.get("TEST_DATABASES", "sqlite,postgresql").split(",") if b.strip()]

# Reference rows the migrations seed; cleaning between tests keeps them.
KEEP_TABLES = {"alembic_version", "priority"}


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashes():
    # Real hashing, fewer rounds: scrypt's full cost is for production.
    from switchboard.people import models

    models.PASSWORD_METHOD = "pbkdf2:sha256:1000"


@pytest.fixture(autouse=True, scope="session")
def _mail_settings_copy_does_not_expire():
    # Each process keeps a copy of the mail settings for CONFIG_SECONDS (switchboard.outbox.
    # settings); a test slower than that would read them again halfway, 3 statements over the
    # bounds that tests/portal/test_sql_per_page.py counts. Here the copy is renewed only by a
    # change made through the settings (and the emptying of the tables after each test); the
    # tests of the expiry move settings._clock themselves.
    from switchboard.outbox import settings
    from switchboard.slm import plans

    settings._clock = lambda: 0.0
    plans._clock = lambda: 0.0  # the SLAs' copy likewise (switchboard.slm.plans)


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _postgres_database() -> str:
    # The pid keeps two test runs on one machine (or xdist workers) apart.
    return f"switchboard_test_{_worker()}_{os.getpid()}"


def _drop_postgres_database() -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{_postgres_database()}" WITH (FORCE)')


def _postgres_url() -> str:
    name = _postgres_database()
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}"
        if IN_CI:
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)", pytrace=False)
        pytest.skip(message)
    base = sa.engine.make_url(PG_ADMIN_URL)
    return str(base.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False))


def make_test_app(database_url: str, **overrides):
    from wsgi import create_app

    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SESSION_COOKIE_SECURE": False,
        "REMEMBER_COOKIE_SECURE": False,
        "RATELIMIT_STORAGE_URI": "memory://",
        # `mail poll` run inside the test process acts in it: forking acting processes from a
        # process with other threads (pytest's) is unsafe. Tests that run the commands as
        # their own processes (receiver run, mail poll) use the default.
        "RECEIVER_PROCESSES": 0,
    }
    config.update(overrides)
    return create_app(config)


@pytest.fixture(scope="session")
def _backend_apps(tmp_path_factory):
    """One migrated database (and app) per backend per worker, made on first use."""
    apps = {}

    def get(backend: str):
        if backend not in apps:
            if backend == "sqlite":
                path = tmp_path_factory.mktemp("db") / "switchboard.db"
                url = f"sqlite:///{path}"
            else:
                url = _postgres_url()
            app = make_test_app(url)
            with app.app_context():
                from flask_migrate import upgrade

                upgrade()
            apps[backend] = app
        return apps[backend]

    yield get
    for app in apps.values():
        with app.app_context():
            db.engine.dispose()
    if "postgresql" in apps:
        _drop_postgres_database()


@pytest.fixture(params=BACKENDS)
def app(request, _backend_apps):
    app = _backend_apps(request.param)
    from portal.auth import limiter

    limiter.reset()
    with app.app_context():
        try:
            yield app
        finally:
            db.session.rollback()
            db.session.remove()
            _empty_tables()


def _empty_tables() -> None:
    tables = [t for t in db.metadata.sorted_tables if t.name not in KEEP_TABLES]
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(tables):
                conn.execute(table.delete())
            conn.execute(sa.text("DELETE FROM sqlite_sequence")) if _has_sqlite_sequence(conn) else None
    # The mail settings just emptied were behind the process's copy of them (it keeps them a
    # few seconds: switchboard.outbox.settings); the next test reads them afresh.
    from switchboard.outbox.settings import forget_desk_config
    from switchboard.slm.plans import forget_plans

    forget_desk_config()
    forget_plans()  # the SLAs' copy (switchboard.slm.plans): its ids are used again


def _has_sqlite_sequence(conn) -> bool:
    return bool(conn.execute(sa.text("SELECT 1 FROM sqlite_master WHERE name='sqlite_sequence'")).first())


@pytest.fixture
def backend(app) -> str:
    return db.engine.dialect.name


@pytest.fixture
def people(app):
    """A small cast: an admin, two analysts in a group, two customers."""
    from switchboard.people.services import create_group, create_person

    cast = {
        "admin": create_person("admin@desk.test", "Ada Admin", admin=True, customer=False, password="admin-password-1"),
        "anna": create_person("anna@desk.test", "Anna Analyst", analyst=True, customer=False, password="anna-password-1"),
        "bob": create_person("bob@desk.test", "Bob Analyst", analyst=True, customer=False, password="bob-password-1"),
        "carol": create_person("carol@example.org", "Carol Customer"),
        "dave": create_person("dave@example.org", "Dave Customer"),
    }
    cast["service_desk"] = create_group("Service Desk", members=[cast["anna"], cast["bob"]])
    cast["network"] = create_group("Network", members=[cast["bob"]])
    db.session.commit()
    return cast
