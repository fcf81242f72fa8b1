"""raw names: member and reservation names that are not UTF-8 are stored as BLOBs

No table changes. The revision marks that rows may hold BLOB names (the raw bytes of a
directory name Go's mkdir made), so that an older fleetbox_db, which would fail on them,
sees a newer index and answers from disk instead of writing to it.

Revision ID: fleetbox_0003
Revises: fleetbox_0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "fleetbox_0003"
down_revision: str | None = "fleetbox_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    # An older fleetbox_db cannot read BLOB names: drop those rows (and their fixtures and
    # reservations); its next reconcile skips such directories as it always did.
    op.execute(
        "DELETE FROM fixtures WHERE member_id IN (SELECT id FROM members"
        " WHERE typeof(cluster) = 'blob' OR typeof(name) = 'blob')"
    )
    op.execute("DELETE FROM members WHERE typeof(cluster) = 'blob' OR typeof(name) = 'blob'")
    op.execute("DELETE FROM reservations WHERE typeof(name) = 'blob'")
