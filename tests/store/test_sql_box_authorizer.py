"""The SQL box on SQLite: an authorizer lets one SELECT read robustlab's tables, nothing more.

``fts3_tokenizer`` hands out (and with two arguments takes) a pointer that SQLite will call,
``load_extension`` loads a shared library, ``readfile``-style functions read the server's
files, PRAGMAs change the connection, ATTACH opens other files: each is denied by
``sqlite3.Connection.set_authorizer`` when the statement is prepared, in one line naming what
was denied, whatever got past the text check. PostgreSQL keeps its reader role
(``test_sql_box.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from service.store import migrate, sql_box
from service.store.queries import QueryFailed, run_select


@pytest.fixture
def sqlite_db(sqlite_url: str) -> str:
    migrate.upgrade(sqlite_url)
    return sqlite_url


@pytest.mark.parametrize("sql, says", [
    ("select fts3_tokenizer('simple')", "the SQL box does not call the function 'fts3_tokenizer'"),
    ("SELECT fts3_tokenizer('simple', x'0000000000000000')", "function 'fts3_tokenizer'"),
    ("select load_extension('/tmp/evil.so')", "the SQL box does not call the function "
                                              "'load_extension'"),
    ("select sqlite_version()", "function 'sqlite_version'"),
    ("select * from sqlite_master", "reads robustlab's tables only, not 'sqlite_master'"),
    ("select name from pragma_table_info('runs')", "no table-valued function"),
    ("select * from json_each('[1, 2]')", "no table-valued function"),
    ("select (select count(*) from sqlite_schema) from runs", "not 'sqlite_schema'"),
])
def test_dangerous_sqlite_calls_are_denied_in_one_line(sqlite_db: str, sql: str,
                                                       says: str) -> None:
    with pytest.raises(QueryFailed) as raised:
        run_select(sqlite_db, sql)
    text = str(raised.value)
    assert says in text and "\n" not in text, text


def test_attach_and_pragmas_are_denied_past_the_text_check(sqlite_db: str,
                                                           tmp_path: Path) -> None:
    path = Path(make_url(sqlite_db).database or "")
    with pytest.raises(QueryFailed, match="^ATTACH is denied: no database is attached"):
        sql_box._sqlite_select(path, f"ATTACH '{tmp_path / 'new.db'}' AS x", 10, 5.0)
    assert not (tmp_path / "new.db").exists()
    with pytest.raises(QueryFailed, match=r"^the SQL box runs no PRAGMA \('query_only'\)"):
        sql_box._sqlite_select(path, "PRAGMA query_only = OFF", 10, 5.0)
    with pytest.raises(QueryFailed, match="insert is denied"):
        sql_box._sqlite_select(path, "INSERT INTO specs (id) VALUES ('x')", 10, 5.0)


def test_ordinary_analysis_still_runs(sqlite_db: str) -> None:
    result = run_select(
        sqlite_db,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3) "
        "SELECT x, round(sqrt(x), 3) AS root, json_extract('{\"a\": 1}', '$.a') AS a, "
        "'{\"b\": 2}' ->> 'b' AS b, upper('x') LIKE 'X' AS liked, "
        "(SELECT count(*) FROM runs r JOIN evaluations e ON e.run_id = r.id) AS n, "
        "row_number() OVER (ORDER BY x DESC) AS rank FROM c ORDER BY x")
    assert result.frame["x"].tolist() == [1, 2, 3]
    assert result.frame.iloc[0][["a", "b", "liked", "n"]].tolist() == [1, 2, 1, 0]
    assert sorted(result.frame["rank"].tolist()) == [1, 2, 3]
