"""history: events recorded by reconcile and every write, and the public SQL views

Adds three tables and the triggers that fill them, and the views `fleetbox-db sql` reads:

- history_meta: one row; whether history is being recorded (not while a new index is first
  filled from disk), why it started, and how many events to keep.
- history: the events, oldest first by id.
- history_touched: member rows changed in the open write transaction, each with its state
  before (NULL for a row that is new); index/history.py turns them into events and empties
  it before the transaction commits, so an event lands if and only if its change does.

Triggers on members stage the rows a statement touches; triggers on reservations write their
events directly (actor NULL until index/history.py names who wrote). A reader's in-memory
reconcile (index/overlay.py) writes TEMP copies of the tables, which fire none of them.

The api_* views are the stable, documented shape of `fleetbox-db sql` (index/sql.py shows
them under their public names: vms, fixtures, addresses, reservations, events, problems);
changing one is a schema change, made by a new revision.

Revision ID: fleetbox_0006
Revises: fleetbox_0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import sqlalchemy as sa
from alembic import op

revision: str = "fleetbox_0006"
down_revision: str | None = "fleetbox_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_MAX_EVENTS: Final = 100_000
FRESH_REASON: Final = "a new index was built from disk (none was found: first use, or deleted)"
UPGRADE_REASON: Final = (
    "the index was upgraded to schema fleetbox_0006, which adds history; "
    "changes before this were not recorded"
)

_RECORDING: Final = "(SELECT recording FROM history_meta WHERE id = 1)"


def _snapshot(row: str) -> str:
    """SQL: a member row's config and state as JSON (the fixtures' too); *row* is old/new."""
    return (
        f"json_object('state', {row}.state, 'config', {row}.config_name IS NOT NULL,"
        f" 'ip', {row}.ip, 'ip_int', {row}.ip_int, 'mac', {row}.mac,"
        f" 'mac_key', {row}.mac_key, 'cpus', {row}.cpus, 'memory_mb', {row}.memory_mb,"
        f" 'disk_mb', {row}.disk_mb, 'image', {row}.image, 'created_at', {row}.created_at,"
        f" 'extra', {row}.extra, 'fixtures', (SELECT json_group_array(json_array(host_path,"
        f" guest_path, label, extra)) FROM (SELECT * FROM fixtures"
        f" WHERE member_id = {row}.id ORDER BY position)))"
    )


#: An IPv4 address as text, from its integer column.
def _dotted(column: str) -> str:
    return (
        f"(({column} >> 24) & 255) || '.' || (({column} >> 16) & 255) || '.' ||"
        f" (({column} >> 8) & 255) || '.' || ({column} & 255)"
    )


_NOW_NS: Final = "CAST((julianday('now') - 2440587.5) * 86400000000000 AS INTEGER)"

TRIGGERS: Final = {
    "history_member_insert": f"""
        AFTER INSERT ON members WHEN {_RECORDING}
        BEGIN INSERT OR IGNORE INTO history_touched (cluster, name, old)
              VALUES (new.cluster, new.name, NULL); END""",
    # Only a change of state or bytes (or a config cleared): a new signature alone (chmod,
    # touch) or a racy row settling is no event, and costs no snapshot.
    "history_member_update": f"""
        BEFORE UPDATE ON members
        WHEN (old.state IS NOT new.state OR old.digest IS NOT new.digest
              OR old.config_name IS NOT new.config_name) AND {_RECORDING}
        BEGIN INSERT OR IGNORE INTO history_touched (cluster, name, old)
              VALUES (old.cluster, old.name, {_snapshot("old")}); END""",
    "history_member_delete": f"""
        BEFORE DELETE ON members WHEN {_RECORDING}
        BEGIN INSERT OR IGNORE INTO history_touched (cluster, name, old)
              VALUES (old.cluster, old.name, {_snapshot("old")}); END""",
    "history_reservation_insert": f"""
        AFTER INSERT ON reservations WHEN {_RECORDING}
        BEGIN INSERT INTO history (at_ns, name, kind, fields, ip)
              VALUES ({_NOW_NS}, new.name, 'ip-reserved',
                      json_object('subnet', new.subnet), {_dotted("new.ip_int")}); END""",
    "history_reservation_delete": f"""
        AFTER DELETE ON reservations WHEN {_RECORDING}
        BEGIN INSERT INTO history (at_ns, name, kind, fields, ip)
              VALUES ({_NOW_NS}, old.name, 'reservation-released',
                      json_object('subnet', old.subnet), {_dotted("old.ip_int")}); END""",
}

#: The public views, by internal name; index/sql.py shows each as its public name.
VIEWS: Final = {
    "api_vms": """
        SELECT m.cluster AS cluster, m.name AS name, CASE WHEN m.state = 'ok' AND (
                 EXISTS (SELECT 1 FROM members o WHERE o.ip_int = m.ip_int AND o.id != m.id)
                 OR EXISTS (SELECT 1 FROM members o WHERE o.mac_key = m.mac_key
                            AND o.id != m.id)) THEN 'conflict' ELSE m.state END AS state,
               m.mac AS mac, m.cpus AS cpus, m.memory_mb AS memory_mb, m.disk_mb AS disk_mb,
               m.image AS image, m.created_at AS created_at, nullif(m.ip, '') AS ip,
               (SELECT count(*) FROM fixtures f WHERE f.member_id = m.id) AS fixtures,
               m.extra AS extra
        FROM members m""",
    "api_fixtures": """
        SELECT m.cluster AS cluster, m.name AS name, f.position AS position,
               f.host_path AS host_path, f.guest_path AS guest_path, f.label AS label
        FROM fixtures f JOIN members m ON m.id = f.member_id""",
    "api_addresses": """
        SELECT 'ip' AS kind, ip AS value, cluster, name, 'config' AS source
          FROM members WHERE ip_int IS NOT NULL
        UNION ALL
        SELECT 'mac', mac, cluster, name, 'config' FROM members WHERE mac_key IS NOT NULL
        UNION ALL
        SELECT 'ip', """
    + _dotted("ip_int")
    + """, NULL, name, 'reservation' FROM reservations""",
    "api_reservations": """
        SELECT name, subnet, """
    + _dotted("ip_int")
    + """ AS ip, nullif(owner_pid, 0) AS owner_pid,
               CASE WHEN created_ns > 0 THEN strftime('%Y-%m-%dT%H:%M:%fZ',
                    created_ns / 1e9, 'unixepoch') END AS created_at
        FROM reservations""",
    "api_events": """
        SELECT id, strftime('%Y-%m-%dT%H:%M:%fZ', at_ns / 1e9, 'unixepoch') AS at, at_ns,
               cluster, name, kind, actor AS who, fields, ip, detail
        FROM history""",
    "api_problems": """
        SELECT 'conflict' AS kind, 'ip' AS what, ip AS value, cluster, name FROM members
          WHERE ip_int IN (SELECT ip_int FROM members WHERE ip_int IS NOT NULL
                           GROUP BY ip_int HAVING count(*) > 1)
        UNION ALL
        SELECT 'conflict', 'mac', mac, cluster, name FROM members
          WHERE mac_key IN (SELECT mac_key FROM members WHERE mac_key IS NOT NULL
                            GROUP BY mac_key HAVING count(*) > 1)
        UNION ALL
        SELECT state, 'state', NULL, cluster, name FROM members
          WHERE state IN ('unreadable', 'stray')""",
}


def upgrade() -> None:
    op.create_table(
        "history_meta",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recording", sa.Integer(), nullable=False),
        sa.Column("max_events", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_history_meta_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_history_meta")),
    )
    op.create_table(
        "history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at_ns", sa.Integer(), nullable=False),
        sa.Column("cluster", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("fields", sa.Text(), nullable=True),
        sa.Column("ip", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_history")),
    )
    op.create_index("ix_history_name", "history", ["name"])
    op.create_index("ix_history_ip", "history", ["ip"])
    op.create_index(
        "ix_history_unattributed", "history", ["id"], sqlite_where=sa.text("actor IS NULL")
    )
    op.create_table(
        "history_touched",
        sa.Column("cluster", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("old", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("cluster", "name", name=op.f("pk_history_touched")),
    )
    for name, body in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body}")
    # An index that already holds members starts its history now; an empty one (a new
    # index) starts it once the first reconcile has filled it, so a rebuild of 100,000
    # members is one event, not 100,000 "created".
    filled = op.get_bind().execute(sa.text("SELECT EXISTS (SELECT 1 FROM members)")).scalar()
    op.execute(
        sa.text(
            "INSERT INTO history_meta (id, recording, max_events, reason)"
            " VALUES (1, :recording, :limit, :reason)"
        ).bindparams(
            recording=1 if filled else 0,
            limit=DEFAULT_MAX_EVENTS,
            reason=UPGRADE_REASON if filled else FRESH_REASON,
        )
    )
    if filled:
        op.execute(
            sa.text(
                f"INSERT INTO history (at_ns, kind, actor, detail) VALUES ({_NOW_NS},"
                " 'history-started', 'fleetbox_db (migration)', :reason)"
            ).bindparams(reason=UPGRADE_REASON)
        )


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW {name}")
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name}")
    op.drop_table("history_touched")
    op.drop_index("ix_history_unattributed", table_name="history")
    op.drop_index("ix_history_ip", table_name="history")
    op.drop_index("ix_history_name", table_name="history")
    op.drop_table("history")
    op.drop_table("history_meta")
