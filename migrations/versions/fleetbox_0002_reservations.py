"""reservations: addresses handed out by allocate_ip() before a config holds them

Revision ID: fleetbox_0002
Revises: fleetbox_0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "fleetbox_0002"
down_revision: str | None = "fleetbox_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reservations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("subnet", sa.Text(), nullable=False),
        sa.Column("ip_int", sa.Integer(), nullable=False),
        sa.Column("owner_pid", sa.Integer(), nullable=False),
        sa.Column("owner_boot", sa.Text(), nullable=False),
        sa.Column("owner_start", sa.Integer(), nullable=False),
        sa.Column("created_ns", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservations")),
    )
    op.create_index("ix_reservations_name_subnet", "reservations", ["name", "subnet"], unique=True)
    op.create_index("ix_reservations_ip_int", "reservations", ["ip_int"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_reservations_ip_int", table_name="reservations")
    op.drop_index("ix_reservations_name_subnet", table_name="reservations")
    op.drop_table("reservations")
