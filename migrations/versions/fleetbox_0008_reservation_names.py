"""reservation names: several live leases may name one member in one subnet

The index mirrors every live lease (disk wins), and a lease file is per address: nothing on
disk stops two of them from naming the same member in the same subnet (a file written by
hand, two trees merged). A unique (name, subnet) index made mirroring the second one fail,
and with it every write to the store, until its owner died. The index stays, not unique:
allocate_ip() still looks a name's reservation up by it.

Revision ID: fleetbox_0008
Revises: fleetbox_0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "fleetbox_0008"
down_revision: str | None = "fleetbox_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_reservations_name_subnet", table_name="reservations")
    op.create_index("ix_reservations_name_subnet", "reservations", ["name", "subnet"])


def downgrade() -> None:
    # Unique again: the lowest address of each name in a subnet keeps its row; the others'
    # leases are mirrored again by the next reconcile of an index that allows them.
    op.execute(
        "DELETE FROM reservations WHERE id NOT IN"
        " (SELECT id FROM reservations r WHERE ip_int ="
        " (SELECT min(ip_int) FROM reservations o WHERE o.name = r.name AND o.subnet = r.subnet))"
    )
    op.drop_index("ix_reservations_name_subnet", table_name="reservations")
    op.create_index("ix_reservations_name_subnet", "reservations", ["name", "subnet"], unique=True)
