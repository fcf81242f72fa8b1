"""The SQLite mirror of the tree: the index file's life cycle, its connection and schema
(Alembic runner and SQLAlchemy models), the rows, the reconcile that keeps them in line
with disk, and the questions answered from them.

Imports nothing here: the CLI's path must not load SQLAlchemy or Alembic, which only
schema.run_alembic and the migrations import, and only when an upgrade is needed.
"""
