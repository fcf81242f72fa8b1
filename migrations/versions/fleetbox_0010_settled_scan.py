"""settled scan: the fingerprint of the last scan found equal to the index

member_seq gains two nullable columns, settled_seq and settled_digest: the change number
at which a reader found disk equal to the index, and a digest of that scan
(index/settled.py). A new process whose scan has the same digest while member_seq still
holds that number knows the index says what disk shows without reading every row: at
10,000 members those reads were a fifth of a new Store's first list().

Revision ID: fleetbox_0010
Revises: fleetbox_0009
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "fleetbox_0010"
down_revision: str | None = "fleetbox_0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("member_seq", sa.Column("settled_seq", sa.Integer(), nullable=True))
    op.add_column("member_seq", sa.Column("settled_digest", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN, not a batch copy (see fleetbox_0005).
    op.drop_column("member_seq", "settled_digest")
    op.drop_column("member_seq", "settled_seq")
