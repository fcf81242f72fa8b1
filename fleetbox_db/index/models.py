"""The index schema as SQLAlchemy typed models: the single definition Alembic compares against.

The runtime speaks SQL to these tables through the stdlib ``sqlite3`` module (index/members.py,
answers.py, reservations.py):
importing ``sqlalchemy.orm`` costs more than a whole ``fleetbox-db ls``, so this module is
imported only by the migrations and by the tests that prove models and migrations agree.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fleetbox_db.records import STORED_STATES

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class MemberRow(Base):
    """One directory under clusters/<cluster>/, with the last config.json that parsed."""

    __tablename__ = "members"
    __table_args__ = (
        CheckConstraint(
            f"state IN ({', '.join(repr(str(s)) for s in STORED_STATES)})", name="member_state"
        ),
        Index("ix_members_cluster_name", "cluster", "name", unique=True),
        Index("ix_members_name", "name"),
        Index("ix_members_ip_int", "ip_int"),
        Index("ix_members_mac_key", "mac_key"),
        Index("ix_members_seq", "seq"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    # Stat signature of config.json when it was last read; NULL when there is none.
    ino: Mapped[int | None] = mapped_column(Integer)
    size: Mapped[int | None] = mapped_column(Integer)
    mtime_ns: Mapped[int | None] = mapped_column(Integer)
    ctime_ns: Mapped[int | None] = mapped_column(Integer)
    # Wall clock just before that read: a file whose mtime is within the filesystem's
    # timestamp granularity of it may have been rewritten unseen (the racy case).
    verified_ns: Mapped[int | None] = mapped_column(Integer)
    digest: Mapped[str | None] = mapped_column(String(32))
    # Why an unreadable config cannot be used (its decode error, or the OS error such as
    # permission denied); NULL in every other state.
    reason: Mapped[str | None] = mapped_column(Text)
    # The last config that parsed (kept while the file is unreadable); NULL when none ever did.
    config_name: Mapped[str | None] = mapped_column(Text)
    mac: Mapped[str | None] = mapped_column(Text)
    mac_key: Mapped[str | None] = mapped_column(Text)
    cpus: Mapped[int | None] = mapped_column(Integer)
    memory_mb: Mapped[int | None] = mapped_column(Integer)
    disk_mb: Mapped[int | None] = mapped_column(Integer)
    image: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[str | None] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(Text)
    ip_int: Mapped[int | None] = mapped_column(Integer)
    extra: Mapped[str | None] = mapped_column(Text)
    # The config's strings (fixtures' too) that Go 1.26 wrote with the escape \ufffd, as
    # JSON that keeps it (index/rows.py); NULL when none did, which is nearly always.
    spelling: Mapped[str | None] = mapped_column(Text)
    # member_seq's value when the row was last inserted or changed (triggers stamp it):
    # a reader reloads only the rows past the number it last saw (index/recorded.py).
    seq: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class FixtureRow(Base):
    """One entry of a member's fixtures list, in file order."""

    __tablename__ = "fixtures"

    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    host_path: Mapped[str] = mapped_column(Text)
    guest_path: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(Text)
    extra: Mapped[str | None] = mapped_column(Text)


class ReservationRow(Base):
    """An address handed out by allocate_ip() before the member's config holds it."""

    __tablename__ = "reservations"
    __table_args__ = (
        # Not unique (fleetbox_0008): live leases, which the table mirrors, may repeat a name.
        Index("ix_reservations_name_subnet", "name", "subnet"),
        Index("ix_reservations_ip_int", "ip_int", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    subnet: Mapped[str] = mapped_column(Text)
    ip_int: Mapped[int] = mapped_column(Integer)
    # The owner process: a pid is trusted only with the boot it belongs to and its start
    # time, so neither a reboot nor pid reuse keeps a dead owner's address forever.
    owner_pid: Mapped[int] = mapped_column(Integer)
    owner_boot: Mapped[str] = mapped_column(Text)
    owner_start: Mapped[int] = mapped_column(Integer)
    created_ns: Mapped[int] = mapped_column(Integer)


class HistoryMetaRow(Base):
    """The one row saying whether history is recorded yet, why it started, and its bound."""

    __tablename__ = "history_meta"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # 0 while a new index is first filled from disk: that fill is one event, not thousands.
    recording: Mapped[int] = mapped_column(Integer)
    max_events: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)


class HistoryRow(Base):
    """One event: a member, a reservation or the history itself changed (index/history.py).

    The triggers that write and stage these are in migrations/versions/fleetbox_0006_history.py;
    SQLAlchemy's metadata does not model triggers or views.
    """

    __tablename__ = "history"
    __table_args__ = (
        Index("ix_history_name", "name"),
        Index("ix_history_ip", "ip"),
        # The events a trigger wrote whose writer is not yet named: a few, found at once.
        Index("ix_history_unattributed", "id", sqlite_where=text("actor IS NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at_ns: Mapped[int] = mapped_column(Integer)
    cluster: Mapped[str | None] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(Text)
    fields: Mapped[str | None] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)


class HistoryTouchedRow(Base):
    """A member row changed in the open write transaction, with its state before (JSON; NULL
    when the row is new). Empty whenever no write transaction is open."""

    __tablename__ = "history_touched"

    cluster: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    old: Mapped[str | None] = mapped_column(Text)


class MemberSeqRow(Base):
    """The one row holding the last change number stamped on a member row or removal, and
    how many numbers back removals are kept (triggers in fleetbox_0007_member_seq.py)."""

    __tablename__ = "member_seq"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(Integer)
    kept_removals: Mapped[int] = mapped_column(Integer)
    # Moved by every change to reservations (fleetbox_0009): a reader re-reads them only then.
    reservations: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # The value at which a reader found disk equal to the index, and its scan's digest
    # (fleetbox_0010, index/settled.py): a new process then need not read every row.
    settled_seq: Mapped[int | None] = mapped_column(Integer)
    settled_digest: Mapped[bytes | None] = mapped_column(LargeBinary)


class VMRecordsRow(Base):
    """One chunk of every 'ok' member's VM record, saved at member_seq value *seq*
    (fleetbox_0011, index/vmblob.py): a new process's first vms() decodes them instead of
    reading every row."""

    __tablename__ = "vm_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # the chunk's number, from 0
    seq: Mapped[int] = mapped_column(Integer)
    blob: Mapped[bytes] = mapped_column(LargeBinary)


#: The key of each deleted member row and the change number of its deletion; only the
#: newest kept_removals numbers. A plain Table: it has no primary key to map.
member_removals: Final = Table(
    "member_removals",
    Base.metadata,
    Column("seq", Integer, nullable=False),
    Column("cluster", Text, nullable=False),
    Column("name", Text, nullable=False),
    Index("ix_member_removals_seq", "seq"),
)
