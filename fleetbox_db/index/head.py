# ruff: noqa: E501
"""The schema of a new index at head, as Alembic's migrations leave it. GENERATED: do not edit.

Regenerate after adding a revision:
    python -c "from fleetbox_db.index import schema; schema.write_snapshot()"
    ruff format fleetbox_db/index/head.py
(tests/test_head_schema.py fails until it is; until then new indexes go through Alembic).
"""

from typing import Final

REVISION: Final = "fleetbox_0004"
#: Pragmas of the file itself, set before the first table.
FILE_PRAGMAS: Final = (("page_size", 4096), ("auto_vacuum", 0), ("encoding", "UTF-8"))
PRAGMAS: Final = (("application_id", 1178753092), ("user_version", 0))
#: sqlite_master's SQL in creation order (automatic indexes are made by their tables).
STATEMENTS: Final = (
    (
        "CREATE TABLE alembic_version (\n"
        "\tversion_num VARCHAR(32) NOT NULL, \n"
        "\tCONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n"
        ")"
    ),
    (
        "CREATE TABLE members (\n"
        "\tid INTEGER NOT NULL, \n"
        "\tcluster TEXT NOT NULL, \n"
        "\tname TEXT NOT NULL, \n"
        "\tstate VARCHAR(16) NOT NULL, \n"
        "\tino INTEGER, \n"
        "\tsize INTEGER, \n"
        "\tmtime_ns INTEGER, \n"
        "\tctime_ns INTEGER, \n"
        "\tverified_ns INTEGER, \n"
        "\tdigest VARCHAR(32), \n"
        "\tconfig_name TEXT, \n"
        "\tmac TEXT, \n"
        "\tmac_key TEXT, \n"
        "\tcpus INTEGER, \n"
        "\tmemory_mb INTEGER, \n"
        "\tdisk_mb INTEGER, \n"
        "\timage TEXT, \n"
        "\tcreated_at TEXT, \n"
        "\tip TEXT, \n"
        "\tip_int INTEGER, \n"
        "\textra TEXT, spelling TEXT, \n"
        "\tCONSTRAINT pk_members PRIMARY KEY (id), \n"
        "\tCONSTRAINT ck_members_member_state CHECK (state IN ('ok', 'configless', 'unreadable', 'stray'))\n"
        ")"
    ),
    ("CREATE UNIQUE INDEX ix_members_cluster_name ON members (cluster, name)"),
    ("CREATE INDEX ix_members_name ON members (name)"),
    ("CREATE INDEX ix_members_ip_int ON members (ip_int)"),
    ("CREATE INDEX ix_members_mac_key ON members (mac_key)"),
    (
        "CREATE TABLE fixtures (\n"
        "\tmember_id INTEGER NOT NULL, \n"
        "\tposition INTEGER NOT NULL, \n"
        "\thost_path TEXT NOT NULL, \n"
        "\tguest_path TEXT NOT NULL, \n"
        "\tlabel TEXT NOT NULL, \n"
        "\textra TEXT, \n"
        "\tCONSTRAINT pk_fixtures PRIMARY KEY (member_id, position), \n"
        "\tCONSTRAINT fk_fixtures_member_id_members FOREIGN KEY(member_id) REFERENCES members (id) ON DELETE CASCADE\n"
        ")"
    ),
    (
        "CREATE TABLE reservations (\n"
        "\tid INTEGER NOT NULL, \n"
        "\tname TEXT NOT NULL, \n"
        "\tsubnet TEXT NOT NULL, \n"
        "\tip_int INTEGER NOT NULL, \n"
        "\towner_pid INTEGER NOT NULL, \n"
        "\towner_boot TEXT NOT NULL, \n"
        "\towner_start INTEGER NOT NULL, \n"
        "\tcreated_ns INTEGER NOT NULL, \n"
        "\tCONSTRAINT pk_reservations PRIMARY KEY (id)\n"
        ")"
    ),
    ("CREATE UNIQUE INDEX ix_reservations_name_subnet ON reservations (name, subnet)"),
    ("CREATE UNIQUE INDEX ix_reservations_ip_int ON reservations (ip_int)"),
)
