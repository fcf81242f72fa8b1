"""A reconcile applied in memory: what a reader answers from while another process writes.

A reader must not wait for the write lock (issue 12). When a scan shows changes and the
lock is taken, the reader opens a read transaction, copies the index's tables into TEMP
tables of its own connection (they shadow the real ones for every unqualified name, so
the same reconcile and the same queries run on them unchanged, and writing them takes no
lock on the file), applies the plan there, answers, and rolls the copy back. The answer is
the one the real reconcile would give; recording it is left to the next writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

__all__ = ["in_memory_copy"]

#: Copied in this order: fixtures reference members.
TABLES: Final = ("members", "fixtures", "reservations")


@contextmanager
def in_memory_copy(conn: sqlite3.Connection) -> Iterator[None]:
    """A read transaction in which TABLES are TEMP copies of one snapshot of the file,
    with the same constraints and indexes; everything done to them is rolled back."""
    conn.execute("BEGIN")
    try:
        marks = ", ".join("?" * len(TABLES))
        schema = conn.execute(
            f"SELECT type, name, tbl_name, sql FROM main.sqlite_master"
            f" WHERE tbl_name IN ({marks}) AND sql IS NOT NULL",
            TABLES,
        ).fetchall()
        tables = {name: sql for kind, name, _, sql in schema if kind == "table"}
        for table in TABLES:
            conn.execute(_in_temp(tables[table], "CREATE TABLE "))
            conn.execute(f"INSERT INTO temp.{table} SELECT * FROM main.{table}")
        for kind, _, _, sql in schema:
            if kind == "index":
                conn.execute(_in_temp(sql, "CREATE UNIQUE INDEX ", "CREATE INDEX "))
        yield
    finally:
        conn.execute("ROLLBACK")


def _in_temp(sql: str, *prefixes: str) -> str:
    """*sql* (a CREATE statement from sqlite_master) creating its object in the temp schema."""
    for prefix in prefixes:
        if sql.startswith(prefix):
            if prefix == "CREATE TABLE ":
                return "CREATE TEMP TABLE " + sql[len(prefix) :]
            return f"{prefix}temp." + sql[len(prefix) :]
    raise ValueError(f"unexpected schema statement: {sql[:60]!r}")
