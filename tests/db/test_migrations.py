"""The migrations build the schema the models describe, the same on SQLite
and PostgreSQL (what `flask db upgrade` gives an operator on either)."""

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from switchboard.app import _render_item
from switchboard.db import db
from tests.conftest import BACKENDS


def test_models_and_migrations_agree(app):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "render_item": _render_item}
        )
        diff = compare_metadata(context, db.metadata)
    assert diff == [], f"models and migrations differ (run `flask db migrate`): {diff}"


def _schema(app) -> dict:
    with app.app_context():
        inspector = sa.inspect(db.engine)
        schema = {}
        for table in sorted(inspector.get_table_names()):
            schema[table] = {
                "columns": {c["name"]: c["nullable"] for c in inspector.get_columns(table)},
                "pk": inspector.get_pk_constraint(table)["constrained_columns"],
                "fks": sorted(
                    (fk["name"], tuple(fk["constrained_columns"]), fk["referred_table"])
                    for fk in inspector.get_foreign_keys(table)
                ),
                # PostgreSQL also lists each unique constraint as an index.
                "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                  for i in inspector.get_indexes(table) if "duplicates_constraint" not in i),
                "uniques": sorted((u["name"], tuple(u["column_names"]))
                                  for u in inspector.get_unique_constraints(table)),
                "checks": sorted(c["name"] for c in inspector.get_check_constraints(table)),
            }
        return schema


@pytest.mark.skipif(set(BACKENDS) != {"sqlite", "postgresql"}, reason="needs both databases")
def test_sqlite_and_postgresql_get_the_same_schema(_backend_apps):
    sqlite_schema = _schema(_backend_apps("sqlite"))
    pg_schema = _schema(_backend_apps("postgresql"))
    assert sqlite_schema.keys() == pg_schema.keys()
    for table in sqlite_schema:
        assert sqlite_schema[table] == pg_schema[table], table
    # Names come from the naming convention, never from a database's defaults.
    assert ("fk_call_customer_id_person", ("customer_id",), "person") in pg_schema["call"]["fks"]
    assert "ck_history_entry_one_owner" in pg_schema["history_entry"]["checks"]
