"""spelling: how a member's strings spelled U+FFFD, so a Go 1.26 file saves back unchanged

One nullable column, members.spelling: the strings of a config that Go 1.26 wrote with the
escape \\ufffd (an invalid UTF-8 byte), in JSON that keeps the escapes; NULL when there are
none. Rows written before this revision forgot the spelling, so the upgrade makes the next
reconcile re-read every config whose strings hold a U+FFFD.

Revision ID: fleetbox_0004
Revises: fleetbox_0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "fleetbox_0004"
down_revision: str | None = "fleetbox_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _holds_replacement(*columns: str) -> str:
    """SQL: one of *columns* holds U+FFFD."""
    return " OR ".join(f"instr({column}, char(65533)) > 0" for column in columns)


def upgrade() -> None:
    op.add_column("members", sa.Column("spelling", sa.Text(), nullable=True))
    # A signature no file has and no digest: the reconciler reads the file again and writes
    # the whole row, spelling included.
    fixtures = _holds_replacement("host_path", "guest_path", "label", "extra")
    op.execute(
        "UPDATE members SET size = -1, digest = NULL WHERE ino IS NOT NULL AND ("
        + _holds_replacement("config_name", "mac", "image", "ip", "extra")
        + f" OR id IN (SELECT member_id FROM fixtures WHERE {fixtures}))"
    )


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN, not a batch copy: dropping the old members table would
    # cascade to every fixture row.
    op.drop_column("members", "spelling")
