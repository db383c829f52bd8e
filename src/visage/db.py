"""The one SQL database behind Visage: engine, sessions and schema migrations.

Galleries (``gallery/store_sql.py``), API keys (``api/keys.py``) and the audit log
(``privacy/audit.py``) keep their tables in the same database so that one URL configures
everything and one transaction can span them. SQLite (the default, a file in the data dir)
runs in WAL mode with a busy timeout, and writers in one process are serialised by a lock
(SQLite's own file lock does it across processes); PostgreSQL needs neither. The schema is
created and upgraded by the Alembic migrations shipped in ``visage/migrations``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from visage.errors import StoreError


class Base(DeclarativeBase):
    pass


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """SQLite drops the zone of stored times; every time Visage stores is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{Path(data_dir) / 'visage.db'}"


def migrate(engine: Any, revision: str = "head") -> None:
    """Create or upgrade the schema to ``revision`` (default: the newest).

    SQLite changes a table's columns by copying it into a new table and dropping the old one;
    with foreign keys enforced, dropping ``persons`` would cascade into every template. So
    enforcement is off while migrating (it can only be switched outside a transaction) and the
    keys are checked before it is switched back on.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("visage").joinpath("migrations")))
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()  # ends SQLAlchemy's implicit transaction (the driver opened none for a PRAGMA)
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise StoreError("the schema upgrade left rows pointing at missing rows; it was rolled back",
                                     code="migration_failed")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Deleted rows are overwritten with zeros, not left in free pages: an erased person is gone from the file.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


class Database:
    """An engine on ``url`` with the schema migrated to the newest revision. Thread-safe."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        try:
            if self.is_sqlite:
                path = url.split("///", 1)[-1]
                if path and path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                # Pools sized for the service's worker threads: an overflow connection is closed after use,
                # and opening one (with its pragmas) costs more than the query it serves.
                self.engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                            pool_size=16, max_overflow=32)
                event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
            migrate(self.engine)
        except (OperationalError, OSError) as exc:
            raise StoreError(f"cannot open the database at {self.safe_url()}: {exc}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._sqlite_write_lock = threading.Lock() if self.is_sqlite else None

    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        if "@" in self.url and "://" in self.url:
            scheme, rest = self.url.split("://", 1)
            return f"{scheme}://***@{rest.split('@', 1)[1]}"
        return self.url

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction; SQLite writers are serialised in-process (the file lock does it across processes)."""
        with self._writer(), self._sessions() as session, session.begin():
            self._take_write_lock(session.connection())
            yield session

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A Core connection for reads on hot paths (a fifth of an ORM session's overhead)."""
        with self.engine.connect() as connection:
            yield connection

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A Core transaction, serialised like :meth:`write`."""
        with self._writer(), self.engine.begin() as connection:
            self._take_write_lock(connection)
            yield connection

    def checkpoint(self) -> None:
        """SQLite: copy what the WAL holds into the database file now, without waiting for anyone (PASSIVE).

        Long write runs (a key rotation) call it between batches so the WAL stays small and the
        final, blocking TRUNCATE checkpoint of :meth:`purge_freed_data` has little left to copy.
        """
        if self.is_sqlite:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def purge_freed_data(self, *, vacuum_tables: tuple[str, ...] = ()) -> bool:
        """Push deleted or replaced row bytes out of the files; True when nothing stood in the way.

        SQLite (``secure_delete`` zeroes freed space) keeps the old page images in its WAL until a
        checkpoint: a TRUNCATE checkpoint copies the pages back and empties the WAL file (it waits
        for readers within the busy timeout). PostgreSQL: ``vacuum_tables`` are vacuumed, so dead
        row versions are reclaimed now rather than by autovacuum later; its WAL segments are
        recycled by the server (sealed records are why that is harmless).
        """
        if self.is_sqlite:
            with self.engine.connect() as connection:
                busy = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
            return busy is None or busy[0] == 0
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for table in vacuum_tables:
                connection.exec_driver_sql(f"VACUUM {table}")
        return True

    def _take_write_lock(self, connection: Connection) -> None:
        """SQLite: take the database's write lock before the transaction reads anything.

        A deferred transaction that reads and then writes cannot be upgraded once another process
        has committed since its read (SQLite answers "database is locked" at once, without
        waiting), and what it read may be stale. ``BEGIN IMMEDIATE`` waits for the lock up front
        (within the busy timeout), so the transaction sees the newest data and cannot fail later.
        """
        if self.is_sqlite:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    @contextmanager
    def _writer(self) -> Iterator[None]:
        lock = self._sqlite_write_lock
        if lock is None:
            yield
            return
        with lock:
            yield
