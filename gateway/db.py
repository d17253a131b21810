"""Database engine, sessions and the declarative base (SQLAlchemy 2).

How the gateway uses its database so that many people can work at once:

* **Reads and writes are different sessions.** `Database.reads()` opens a
  session whose transactions begin DEFERRED on SQLite: in WAL mode they read a
  snapshot and never take the write lock, so any number of them run beside a
  writer.  A read session refuses INSERT, UPDATE and DELETE outright (on every
  database), so a write hidden in a read path fails in the tests instead of
  meeting "database is locked" under load.
* **Writes are short and take the lock up front.** `Database.sessions()` and
  `Database.transaction()` begin `BEGIN IMMEDIATE` on SQLite, so a
  read-check-write (TOTP replay guard, throttles, audit sequence numbers) runs
  on data no other writer can change underneath it.  Work that needs no lock
  (password hashing, key-service calls, storage) happens before the write
  transaction begins, never inside it.
* **One writer at a time per process waits in a queue, not in a sleep loop.**
  Writers of this process take a lock before `BEGIN IMMEDIATE` and release it
  at commit or rollback, so they queue in order; SQLite's busy timeout is left
  for the rare writer of another process (the CLI, a second server).
* **PostgreSQL** gets a pool sized per process (`PHIGATE_DB_POOL_SIZE`,
  `PHIGATE_DB_MAX_OVERFLOW`, `PHIGATE_DB_POOL_TIMEOUT`) and row or advisory
  locks where a read-check-write needs them.  A pooled connection is checked
  with a ping before use only when it sat idle in the pool for more than
  `PING_AFTER_IDLE_SECONDS`: a ping is a round trip, as long as a short
  transaction's own statement, and a connection handed back a moment ago is
  alive unless the server went away in that moment (then the request fails
  once, rolled back, and SQLAlchemy replaces every connection of the pool).

Schema changes go through Alembic only (`phigate db upgrade`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_READ = "phigate_read"  # execution option: this connection only reads (snapshot, no write lock)
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
_IDLE_SINCE = "phigate_idle_since"  # connection record info: when it was last handed back to the pool
PING_AFTER_IDLE_SECONDS = 1.0


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both SQLite (which drops tzinfo) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class WriteInReadSession(RuntimeError):
    """A read session tried to write: the caller must open a write session (`Database.sessions()`)."""


@dataclass(frozen=True)
class PoolSettings:
    """Connections per process; see docs/operations.md for sizing."""

    size: int = 10
    max_overflow: int = 20
    timeout: float = 30.0
    sqlite_busy_timeout: float = 30.0


def _is_write(statement: str) -> bool:
    return statement.lstrip().split(None, 1)[0].upper() in _WRITES if statement.strip() else False


def make_engine(url: str, pool: PoolSettings | None = None) -> Engine:
    pool = pool or PoolSettings()
    if not url.startswith("sqlite"):
        engine = create_engine(url, pool_size=pool.size, max_overflow=pool.max_overflow, pool_timeout=pool.timeout)
        _ping_when_idle(engine)
        return engine
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # A connection costs a file handle: enough for every worker thread, so that none waits for the pool.
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": pool.sqlite_busy_timeout},
        pool_size=pool.size,
        max_overflow=pool.max_overflow,
        pool_timeout=pool.timeout,
    )
    writer = threading.Lock()

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):
        # Let SQLAlchemy, not pysqlite, issue BEGIN so that the begin hook below chooses its kind.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Connection):
        if conn.get_execution_options().get(_READ):
            # A snapshot read: never the write lock, never waits for a writer.
            conn.exec_driver_sql("BEGIN")
            return
        # Queue behind this process's other writers (ordered, no sleeping), then take the lock
        # at once: a read-check-write inside sees data no other writer can change.
        if not writer.acquire(timeout=pool.sqlite_busy_timeout):
            raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked (writer queue)"))
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            writer.release()
            raise
        conn.info["phigate_writer"] = True

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _sqlite_end(conn: Connection):
        if conn.info.pop("phigate_writer", False):
            writer.release()

    def _dropped(record) -> None:
        # A connection handed back to the pool mid-transaction (a session never closed)
        # must not keep every other writer of the process waiting.
        if record is not None and record.info.pop("phigate_writer", False):
            writer.release()

    @event.listens_for(engine, "reset")
    def _sqlite_reset(_dbapi_conn, record, _reset_state):
        _dropped(record)

    @event.listens_for(engine, "invalidate")
    def _sqlite_invalidated(_dbapi_conn, record, _exception):
        _dropped(record)

    return engine


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's pre-ping, but only for a connection idle in the pool longer than PING_AFTER_IDLE_SECONDS."""

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _idle_from_now(_dbapi_conn, record):
        if record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn, record, _proxy):
        if time.monotonic() - record.info.get(_IDLE_SINCE, 0.0) <= PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError("a pooled connection did not answer its ping") from exc


def _refuse_writes(engine: Engine) -> None:
    @event.listens_for(engine, "before_cursor_execute")
    def _read_only(conn, cursor, statement, parameters, context, executemany):
        if conn.get_execution_options().get(_READ) and _is_write(statement):
            raise WriteInReadSession("a read session tried to write; use Database.sessions() or Database.transaction()")


class Database:
    """An engine plus its session factories; one per process."""

    def __init__(self, url: str, pool: PoolSettings | None = None):
        self.url = url
        self.engine = make_engine(url, pool)
        _refuse_writes(self.engine)
        # The engine itself writes (as do Alembic and maintenance code that use it directly);
        # read sessions go through a view of it that never takes the write lock.
        self.reader = self.engine.execution_options(**{_READ: True})
        self.reads = sessionmaker(self.reader, expire_on_commit=False)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def session(self, *, write: bool) -> Session:
        return (self.sessions if write else self.reads)()

    def make_writer(self, session: Session) -> None:
        """Let a read session write from its next transaction on (the current one, if any, only read)."""
        if session.in_transaction():
            session.commit()
        session.bind = self.engine

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write session that commits on success and rolls back on any error."""
        with self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read session for one consistent look at the data; closed (its snapshot released) at the end."""
        with self.reads() as session:
            yield session

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()
