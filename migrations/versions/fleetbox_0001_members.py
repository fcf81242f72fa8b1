"""members and fixtures: the mirror of clusters/<cluster>/<member>/config.json

Revision ID: fleetbox_0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "fleetbox_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# "FBXD": lets open() tell our index from someone else's SQLite file without a table scan.
APPLICATION_ID = 0x46425844


def upgrade() -> None:
    op.create_table(
        "members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cluster", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("ino", sa.Integer(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("mtime_ns", sa.Integer(), nullable=True),
        sa.Column("ctime_ns", sa.Integer(), nullable=True),
        sa.Column("verified_ns", sa.Integer(), nullable=True),
        sa.Column("digest", sa.String(length=32), nullable=True),
        sa.Column("config_name", sa.Text(), nullable=True),
        sa.Column("mac", sa.Text(), nullable=True),
        sa.Column("mac_key", sa.Text(), nullable=True),
        sa.Column("cpus", sa.Integer(), nullable=True),
        sa.Column("memory_mb", sa.Integer(), nullable=True),
        sa.Column("disk_mb", sa.Integer(), nullable=True),
        sa.Column("image", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Text(), nullable=True),
        sa.Column("ip", sa.Text(), nullable=True),
        sa.Column("ip_int", sa.Integer(), nullable=True),
        sa.Column("extra", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "state IN ('ok', 'configless', 'unreadable', 'stray')",
            name=op.f("ck_members_member_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_members")),
    )
    op.create_index("ix_members_cluster_name", "members", ["cluster", "name"], unique=True)
    op.create_index("ix_members_name", "members", ["name"], unique=False)
    op.create_index("ix_members_ip_int", "members", ["ip_int"], unique=False)
    op.create_index("ix_members_mac_key", "members", ["mac_key"], unique=False)
    op.create_table(
        "fixtures",
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("host_path", sa.Text(), nullable=False),
        sa.Column("guest_path", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("extra", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_fixtures_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("member_id", "position", name=op.f("pk_fixtures")),
    )
    op.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def downgrade() -> None:
    op.drop_table("fixtures")
    op.drop_index("ix_members_mac_key", table_name="members")
    op.drop_index("ix_members_ip_int", table_name="members")
    op.drop_index("ix_members_name", table_name="members")
    op.drop_index("ix_members_cluster_name", table_name="members")
    op.drop_table("members")
    op.execute("PRAGMA application_id = 0")
