"""reason: why an unreadable member's config cannot be used

One nullable column, members.reason: the decode error ('wrong type for "cpus": expected an
integer, got a string') or the OS error ('cannot be read: Permission denied') of a member
whose state is unreadable; NULL otherwise. Rows written before this revision know no
reason, so the upgrade makes the next reconcile re-read every unreadable config that has a
signature (one without is retried on every listing anyway).

Revision ID: fleetbox_0005
Revises: fleetbox_0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "fleetbox_0005"
down_revision: str | None = "fleetbox_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("members", sa.Column("reason", sa.Text(), nullable=True))
    # A signature no file has and no digest: the reconciler reads the file again and
    # records the reason.
    op.execute(
        "UPDATE members SET size = -1, digest = NULL WHERE state = 'unreadable' AND ino IS NOT NULL"
    )


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN, not a batch copy: dropping the old members table would
    # cascade to every fixture row.
    op.drop_column("members", "reason")
