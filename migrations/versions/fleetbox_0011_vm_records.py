"""vm records: every 'ok' member's VM record, saved in chunks for a new process's vms()

A new process's first vms() read every 'ok' row and its fixtures and parsed each
created_at: at 10,000 members about 55 ms, as long as the scan itself. vm_records holds
the same records as marshal chunks (index/vmblob.py) saved at one member_seq value; a
reader at that value decodes them in about half the time. Saved only for a settled index
(member_seq.settled_seq at that value), so a store under constant change never rewrites it.

Revision ID: fleetbox_0011
Revises: fleetbox_0010
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "fleetbox_0011"
down_revision: str | None = "fleetbox_0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "vm_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vm_records")),
    )


def downgrade() -> None:
    op.drop_table("vm_records")
