"""The SQL box's least-privilege role: NOLOGIN ``robustlab_reader`` with SELECT on our tables.

PostgreSQL only (a no-op on SQLite, whose SQL box opens the file read-only instead).

- ``robustlab_reader``: NOLOGIN, no attributes, a member of no role. Roles are cluster-wide
  and several robustlab databases may share one cluster (the tests make one per session), so
  it is created if missing, and a pre-existing one is checked (or, as a superuser, reset).
- SELECT on exactly the tables below (and the schema version) and USAGE on their schema,
  in this database. A later
  migration that adds a table the SQL box should see grants it too; nothing is granted by
  default, so a new table stays out of the box until someone decides otherwise.
- ``robustlab_select(query, max_rows, max_bytes)``: a SECURITY DEFINER function owned by the
  reader that runs the box's one SELECT and returns each row as JSON text, stopping after
  ``max_rows`` + 1 rows and raising once the rows pass ``max_bytes``. SECURITY DEFINER is what
  makes ``SET LOCAL ROLE`` stick: inside such a function PostgreSQL refuses to change ``role``
  or ``session_authorization``, whereas a plain ``SET ROLE`` can be undone by
  ``set_config('role', <session user>, true)`` inside the very query when the deployment
  connects as a superuser.

Downgrade drops the function and this database's grants, then drops the role only if nothing
else in the cluster refers to it (another database's grants, or a login it was granted to).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

READER = "robustlab_reader"
FUNCTION = "robustlab_select"
SIGNATURE = f"{FUNCTION}(text, bigint, bigint)"
TABLES = ("specs", "runs", "evaluations", "metrics", "artifacts", "checkpoints", "schedules",
          "schedule_coverage", "alembic_version")
"""robustlab's tables at this revision: what the SQL box may read. ``alembic_version`` too: a
dashboard login that is a member of the reader checks the schema's revision before it reads."""

ENSURE_ROLE = f"""
DO $do$
DECLARE
    is_super boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
BEGIN
    BEGIN
        CREATE ROLE {READER} NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;  -- made by another robustlab database of this cluster (perhaps just now)
    END;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER}'
               AND (rolsuper OR rolcanlogin OR rolreplication OR rolbypassrls OR rolcreaterole
                    OR rolcreatedb)) THEN
        IF NOT is_super THEN
            RAISE EXCEPTION 'role {READER} has more than NOLOGIN: ask a superuser to run '
                'ALTER ROLE {READER} NOLOGIN NOSUPERUSER NOREPLICATION NOBYPASSRLS '
                'NOCREATEROLE NOCREATEDB';
        END IF;
        ALTER ROLE {READER} NOLOGIN NOSUPERUSER NOREPLICATION NOBYPASSRLS NOCREATEROLE
            NOCREATEDB;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
               WHERE r.rolname = '{READER}') THEN
        RAISE EXCEPTION 'role {READER} is a member of other roles and would inherit their '
            'privileges: revoke them (\\du {READER})';
    END IF;
END
$do$
"""

SELECT_FUNCTION = f"""
CREATE FUNCTION {FUNCTION}(query text, max_rows bigint, max_bytes bigint)
RETURNS SETOF text
LANGUAGE plpgsql
SECURITY DEFINER
AS $fn$
DECLARE
    r record;
    row_json text;
    n_rows bigint := 0;
    n_bytes bigint := 0;
BEGIN
    -- FOR ... IN EXECUTE opens a cursor: one SELECT only, and rows are computed one at a time,
    -- so the caps below stop the query itself, not just what is sent. A row's size in memory
    -- is checked before it is turned into JSON, the JSON (what is sent) after.
    FOR r IN EXECUTE 'SELECT q FROM (' || query || E'\n) AS q' LOOP
        n_rows := n_rows + 1;
        IF n_bytes + pg_column_size(r.q) > max_bytes THEN
            RAISE EXCEPTION 'the result passed the % byte cap at row %', max_bytes, n_rows
                USING ERRCODE = 'program_limit_exceeded', HINT = 'robustlab byte cap';
        END IF;
        row_json := to_json(r.q)::text;
        n_bytes := n_bytes + octet_length(row_json);
        IF n_bytes > max_bytes THEN
            RAISE EXCEPTION 'the result passed the % byte cap at row %', max_bytes, n_rows
                USING ERRCODE = 'program_limit_exceeded', HINT = 'robustlab byte cap';
        END IF;
        RETURN NEXT row_json;
        EXIT WHEN n_rows > max_rows;  -- one row past the limit tells the caller it was cut
    END LOOP;
END
$fn$
"""


def _is_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if not _is_postgres():
        return
    op.execute(ENSURE_ROLE)
    op.execute(f"GRANT USAGE ON SCHEMA {_schema()} TO {READER}")
    op.execute(f"GRANT SELECT ON {', '.join(TABLES)} TO {READER}")
    op.execute(SELECT_FUNCTION)
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    # A superuser may hand the function to any role; another owner must be able to SET ROLE to
    # the reader (PostgreSQL 16 gives a CREATEROLE creator ADMIN on it) and the reader needs
    # CREATE on the schema for that moment only.
    op.execute(f"""
DO $do$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        ALTER FUNCTION {SIGNATURE} OWNER TO {READER};
    ELSE
        GRANT {READER} TO current_user;
        GRANT CREATE ON SCHEMA {_schema()} TO {READER};
        ALTER FUNCTION {SIGNATURE} OWNER TO {READER};
        REVOKE CREATE ON SCHEMA {_schema()} FROM {READER};
    END IF;
END
$do$
""")


def downgrade() -> None:
    if not _is_postgres():
        return
    op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
    op.execute(f"""
DO $do$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER}') THEN
        RETURN;
    END IF;
    REVOKE SELECT ON {', '.join(TABLES)} FROM {READER};
    REVOKE USAGE ON SCHEMA {_schema()} FROM {READER};
    -- Still referred to by another database's grants, or granted to a login (a dashboard's):
    -- keep it, or the other database's SQL box (or that login) would lose it.
    IF EXISTS (SELECT 1 FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid
               WHERE r.rolname = '{READER}' AND d.refclassid = 'pg_authid'::regclass)
       OR EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
                  WHERE r.rolname = '{READER}') THEN
        RETURN;
    END IF;
    BEGIN
        DROP ROLE {READER};
    EXCEPTION WHEN dependent_objects_still_exist OR undefined_object THEN
        NULL;  -- another database granted to it, or dropped it, meanwhile
    END;
END
$do$
""")


def _schema() -> str:
    """The schema robustlab's tables live in (the connection's current schema), quoted."""
    name = op.get_bind().exec_driver_sql("SELECT current_schema()").scalar_one()
    return '"' + str(name).replace('"', '""') + '"'
