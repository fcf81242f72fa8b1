"""member seq: a change counter on members, so a reader reloads only the rows that changed

Adds members.seq, the one-row table member_seq holding the last number handed out, and
member_removals (the keys of deleted rows, each with the number of its deletion). Triggers
stamp every inserted or updated row with a new number and record every deletion, so no
write - ours, another process's, or a hand edit in the sqlite3 shell - can change a row
without a reader that remembers the last number seeing it (index/recorded.py). The stamp
is an UPDATE OF every column but seq, so it does not fire the update trigger again: a
revision that adds a column to members must recreate member_seq_update with it.

Removals are kept for the newest ``kept_removals`` numbers only: a reader that last looked
further back than that reloads every row.

Revision ID: fleetbox_0007
Revises: fleetbox_0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import sqlalchemy as sa
from alembic import op

revision: str = "fleetbox_0007"
down_revision: str | None = "fleetbox_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_KEPT_REMOVALS: Final = 10_000

#: Every members column but seq: an UPDATE OF these is a change; the stamp itself is not.
_COLUMNS: Final = (
    "id, cluster, name, state, ino, size, mtime_ns, ctime_ns, verified_ns, digest, reason,"
    " config_name, mac, mac_key, cpus, memory_mb, disk_mb, image, created_at, ip, ip_int,"
    " extra, spelling"
)
_BUMP: Final = "UPDATE member_seq SET value = value + 1 WHERE id = 1;"
_CURRENT: Final = "(SELECT value FROM member_seq WHERE id = 1)"
_STAMP: Final = f"UPDATE members SET seq = {_CURRENT} WHERE id = new.id;"

TRIGGERS: Final = {
    "member_seq_insert": f"AFTER INSERT ON members BEGIN {_BUMP} {_STAMP} END",
    # A key changed by hand (no code of ours does) also removes the old key.
    "member_seq_update": f"""
        AFTER UPDATE OF {_COLUMNS} ON members BEGIN {_BUMP} {_STAMP}
        INSERT INTO member_removals (seq, cluster, name)
            SELECT value, old.cluster, old.name FROM member_seq
            WHERE id = 1 AND (old.cluster IS NOT new.cluster OR old.name IS NOT new.name);
        END""",
    # The removal and, past the window, the oldest ones dropped (ix_member_removals_seq).
    "member_seq_delete": f"""
        AFTER DELETE ON members BEGIN {_BUMP}
        INSERT INTO member_removals (seq, cluster, name)
            VALUES ({_CURRENT}, old.cluster, old.name);
        DELETE FROM member_removals WHERE seq <=
            (SELECT value - kept_removals FROM member_seq WHERE id = 1); END""",
}


def upgrade() -> None:
    op.add_column(
        "members", sa.Column("seq", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.create_index("ix_members_seq", "members", ["seq"])
    op.create_table(
        "member_seq",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("kept_removals", sa.Integer(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_member_seq_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_seq")),
    )
    op.create_table(
        "member_removals",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("cluster", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
    )
    op.create_index("ix_member_removals_seq", "member_removals", ["seq"])
    op.execute(
        sa.text(
            "INSERT INTO member_seq (id, value, kept_removals) VALUES (1, 0, :kept)"
        ).bindparams(kept=DEFAULT_KEPT_REMOVALS)
    )
    for name, body in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name}")
    op.drop_index("ix_member_removals_seq", table_name="member_removals")
    op.drop_table("member_removals")
    op.drop_table("member_seq")
    op.drop_index("ix_members_seq", table_name="members")
    # ALTER TABLE ... DROP COLUMN, not a batch copy (see fleetbox_0005).
    op.drop_column("members", "seq")
