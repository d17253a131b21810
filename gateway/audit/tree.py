"""Reading the stored tree: events as leaves, stored subtree nodes, subtree hashes for proofs."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, Text, and_, case, cast, func, literal_column, select, tuple_, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from gateway.audit.models import AuditCheckpoint, AuditEvent, AuditTreeNode, CheckpointKind
from translog import merkle
from translog.leaf import format_time, leaf_hash_of, leaf_hash_text, leaf_hashes_text

# Nodes for perfect subtrees of 2**NODE_MIN_LEVEL leaves and up are stored; smaller
# subtrees are hashed from one run of at most BUCKET leaf hashes when needed.
NODE_MIN_LEVEL = 8
BUCKET = 1 << NODE_MIN_LEVEL

E = AuditEvent.__table__.c
EVENT_COLUMNS = (
    E.seq,
    E.occurred_at,
    E.action,
    E.outcome,
    E.severity,
    E.actor_user_id,
    E.actor_org_id,
    E.ip,
    E.user_agent,
    E.target_type,
    E.target_id,
    E.target_org_id,
    E.details,
    E.leaf_hash,
)


class LogBroken(Exception):
    """The stored log does not match itself or its signed checkpoints."""

    def __init__(self, message: str, seq: int | None = None):
        super().__init__(message)
        self.seq = seq


class PrunedRange(Exception):
    """A subtree hash needs leaves that retention has pruned."""


def _conn(db: Session | Connection) -> Connection:
    return db.connection() if isinstance(db, Session) else db


class ShortReads:
    """Small reads in short read transactions on one connection (stored nodes, leaf buckets,
    checkpoints for a long export or verify): never SQLite's write lock, no long
    PostgreSQL snapshot.  Safe because rows up to a signed tree size never change."""

    def __init__(self, database):
        self.database = database
        self._conn: Connection | None = None

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed:
            # The read view of the engine: a snapshot on SQLite, never the write lock.
            self._conn = self.database.reader.connect()
            if self._conn.dialect.name == "postgresql":
                # Each read is a statement-level snapshot: no BEGIN/ROLLBACK round trips.
                self._conn = self._conn.execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    def execute(self, query):
        conn = self._connection()
        try:
            return _Buffered(conn.execute(query).all())
        finally:
            conn.rollback()

    def scalar(self, query):
        conn = self._connection()
        try:
            return conn.scalar(query)
        finally:
            conn.rollback()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __del__(self):
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()


class _Buffered(list):
    def all(self):
        return list(self)


def keyset_stream(reads, query, order_cols, key, chunk: int = 5000) -> Iterator:
    """Rows of `query` ordered by `order_cols`, fetched `chunk` at a time by keyset (constant memory)."""
    last = None
    while True:
        q = query
        if last is not None:
            q = (
                q.where(tuple_(*order_cols) > tuple_(*last))
                if len(order_cols) > 1
                else q.where(order_cols[0] > last[0])
            )
        rows = reads.execute(q.order_by(*order_cols).limit(chunk))
        if not rows:
            return
        yield from rows
        if len(rows) < chunk:
            return
        last = key(rows[-1])


def _events_query(dialect_name: str, after: int, upto: int | None, where):
    query = select(*raw_columns(dialect_name)).where(E.seq > after).order_by(E.seq)
    if upto is not None:
        query = query.where(E.seq <= upto)
    if where is not None:
        query = query.where(where)
    return query


def _fetch_chunks(conn: Connection, query, chunk: int) -> Iterator[Sequence]:
    """Rows `chunk` at a time in constant memory, with no result processing (the raw columns need none).

    PostgreSQL: a server-side cursor, fetched `chunk` rows at a time.  SQLite's cursor steps through the result
    anyway: its own tuples are read straight from it, a quarter faster than result rows.
    """
    if conn.dialect.name == "sqlite":
        result = conn.execute(query)
        try:
            while rows := result.cursor.fetchmany(chunk):
                yield rows
        finally:
            result.close()
        return
    # The driver's server-side cursor itself, `chunk` rows per FETCH, its own row tuples, after the
    # first batch: SQLAlchemy's buffered result would fetch a few dozen rows at a time and wrap
    # every row (it reads one row ahead, so the first batch goes through it).
    result = conn.execute(query, execution_options={"stream_results": True, "max_row_buffer": chunk})
    try:
        rows = [tuple(row) for row in result.fetchmany(chunk)]
        if rows:
            yield rows
        if len(rows) == chunk:
            cursor = result.cursor
            while rows := cursor.fetchmany(chunk):
                yield rows
    finally:
        result.close()


def event_chunks(database, after: int, upto: int | None = None, where=None, chunk: int = 20_000) -> Iterator[Sequence]:
    """Raw event rows (`raw_columns`) with seq in (after, upto], in order, in lists of `chunk` rows.

    One streaming query in one read transaction: a server-side cursor on PostgreSQL,
    a snapshot that never takes the write lock on SQLite.
    """
    with database.reader.connect() as conn:
        yield from _fetch_chunks(conn, _events_query(conn.dialect.name, after, upto, where), chunk)


def stream_events(database, after: int, upto: int | None = None, where=None, chunk: int = 20_000) -> Iterator:
    """Event rows with seq in (after, upto] in order, as `canonical_rows`, streamed in one read transaction."""
    for rows in event_chunks(database, after, upto, where, chunk):
        yield from canonical_rows(rows)


# The same columns without SQLAlchemy's result processing: streams convert the driver's
# values to canonical fields themselves (about twice as fast on long scans).
RAW_COLUMNS = tuple(type_coerce(cast(c, Text) if c is E.details else c, NullType()).label(c.key) for c in EVENT_COLUMNS)
# PostgreSQL formats the canonical timestamp itself (in its own process, in C).
PG_RAW_COLUMNS = tuple(
    type_coerce(func.to_char(func.timezone("UTC", E.occurred_at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), NullType()).label(
        "occurred_at"
    )
    if c is E.occurred_at
    else raw
    for c, raw in zip(EVENT_COLUMNS, RAW_COLUMNS, strict=False)
)
# So does SQLite, from the text SQLAlchemy stores ("YYYY-MM-DD HH:MM:SS.ffffff", UTC); any
# other text is passed on as stored and converted by `_canonical_time`.
_SQLITE_TIME = case(
    (
        and_(
            func.length(E.occurred_at) == 26,
            func.substr(E.occurred_at, 11, 1) == " ",
            func.substr(E.occurred_at, 20, 1) == ".",
        ),
        func.substr(E.occurred_at, 1, 10)
        .op("||")(literal_column("'T'"))
        .op("||")(func.substr(E.occurred_at, 12))
        .op("||")(literal_column("'Z'")),
    ),
    else_=cast(E.occurred_at, Text),
)
SQLITE_RAW_COLUMNS = tuple(
    type_coerce(_SQLITE_TIME, NullType()).label("occurred_at") if c is E.occurred_at else raw
    for c, raw in zip(EVENT_COLUMNS, RAW_COLUMNS, strict=False)
)
_loads = json.loads


def raw_columns(dialect_name: str) -> tuple:
    if dialect_name == "postgresql":
        return PG_RAW_COLUMNS
    return SQLITE_RAW_COLUMNS if dialect_name == "sqlite" else RAW_COLUMNS


def checked_chunks(
    conn: Connection, after: int, upto: int | None, chunk: int
) -> Iterator[tuple[list[bytes], tuple | None]]:
    """Verified stored leaves of events after+1..upto, a batch at a time, each recomputed from its row.

    Yields (leaves, None) per batch and, at the first row that does not hold,
    (the leaves before it, that row as `canonical_rows` gives it) and stops.
    """
    expected = after + 1
    for rows in _fetch_chunks(conn, _events_query(conn.dialect.name, after, upto, None), chunk):
        leaves, bad = checked_leaves(rows, expected)
        yield leaves, bad
        if bad is not None:
            return
        expected += len(leaves)


def _canonical_time(value) -> str:
    if isinstance(value, str):
        if len(value) == 27 and value[10] == "T" and value[26] == "Z":
            return value  # already canonical (formatted by the database, see raw_columns)
        # SQLite text as SQLAlchemy stores it: "YYYY-MM-DD HH:MM:SS.ffffff" (UTC).
        if len(value) == 26 and value[10] == " " and value[19] == ".":
            return value[:10] + "T" + value[11:] + "Z"
        parsed = datetime.fromisoformat(value)
        value = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    return format_time(value)


def canonical_rows(rows) -> Iterator[tuple]:
    """Raw event rows -> (12 canonical fields in FIELDS order, details as stored JSON text, stored leaf hash)."""
    for r in rows:
        details = r[12]
        leaf = r[13]
        yield (
            r[0],
            _canonical_time(r[1]),
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            r[7],
            r[8],
            r[9],
            r[10],
            r[11],
            details if details is not None else "{}",
            leaf if isinstance(leaf, bytes) else bytes(leaf or b""),
        )


def canonical_batch(rows: Sequence) -> Sequence:
    """`canonical_rows` of a whole batch: the raw rows themselves when they already are.

    The database formats the timestamps (see `raw_columns`): when every one of the batch is
    canonical text, no details column is null and every leaf hash is bytes, the rows need
    no conversion.  Checked for the batch at once (lengths, then the 'T' and 'Z' at their
    places in the joined text); any other batch is converted row by row.
    """
    try:
        times = [r[1] for r in rows]
        n = len(times)
        if (
            n
            and set(map(len, times)) == {27}
            and set(map(type, times)) == {str}
            and (joined := "".join(times))[10::27] == "T" * n
            and joined[26::27] == "Z" * n
            and None not in [r[12] for r in rows]
            and set(map(type, [r[13] for r in rows])) == {bytes}
        ):
            return rows
    except TypeError:
        pass
    return list(canonical_rows(rows))


def row_fields(row) -> tuple:
    """The canonical field tuple of a row from `canonical_rows`, details parsed (leaf hash excluded)."""
    try:
        details = _loads(row[12])
    except ValueError:
        details = row[12]
    return (*row[:12], details)


def checked_leaves(rows: Sequence, expected: int) -> tuple[list[bytes], tuple | None]:
    """The stored leaf hashes of raw rows that should be events `expected`, `expected + 1`, ...

    Each leaf is recomputed from its row's fields first.  Returns the leaves as far as
    they hold and the first row that does not (as `canonical_rows` gives it: its seq is
    not `expected + len(leaves)`, or its fields do not hash to its leaf), or None.  A whole
    batch is hashed at once (`leaf_hashes_text`); only a batch with a bad or unusual row
    is checked again row by row.
    """
    stored = [r[13] for r in rows]
    if rows and rows[0][0] == expected and rows[-1][0] == expected + len(rows) - 1:
        # Sequence numbers are unique and ordered: first and last right means none is missing.
        try:
            if leaf_hashes_text(rows) == stored:
                return stored, None
        except (TypeError, ValueError):
            pass  # an unusual value: the row-by-row check below names it
    good: list[bytes] = []
    for row in canonical_rows(rows):
        if row[0] != expected or recomputed_leaf(row) != row[13]:
            return good, row
        good.append(row[13])
        expected += 1
    return good, None


def recomputed_leaf(row) -> bytes:
    """The leaf hash of a `canonical_rows` row's fields (fast splice first, full parse if that differs)."""
    fast = leaf_hash_text(*row[:13])
    if fast == row[13]:
        return fast
    try:
        return leaf_hash_of(*row_fields(row))
    except (TypeError, ValueError):
        return fast


def tree_size(db: Session | Connection) -> int:
    """Number of leaves ever appended (pruning keeps the numbering)."""
    conn = _conn(db)
    last = conn.scalar(select(func.max(E.seq)))
    if last is None:
        last = conn.scalar(
            select(func.max(AuditCheckpoint.tree_size)).where(AuditCheckpoint.kind == CheckpointKind.prune_base)
        )
    return last or 0


def prune_base(db) -> int:
    """Leaves [0, prune_base) are pruned: 0 when nothing ever was."""
    conn = db if isinstance(db, ShortReads) else _conn(db)
    return (
        conn.scalar(
            select(func.max(AuditCheckpoint.tree_size)).where(AuditCheckpoint.kind == CheckpointKind.prune_base)
        )
        or 0
    )


class TreeReader:
    """Subtree hashes of the stored tree, from stored nodes and cached buckets of leaf hashes."""

    def __init__(self, db, size: int):
        # A Session or Connection (proofs inside a request) or a ShortReads (long exports).
        self.conn = db if isinstance(db, ShortReads) else _conn(db)
        self.size = size
        self._buckets: dict[tuple[int, int], list[bytes]] = {}
        self._memo: dict[tuple[int, int], bytes] = {}

    def leaves(self, start: int, end: int) -> list[bytes]:
        """Stored leaf hashes of leaves [start, end) (events seq start+1 .. end)."""
        rows = self.conn.execute(select(E.seq, E.leaf_hash).where(E.seq > start, E.seq <= end).order_by(E.seq)).all()
        if len(rows) != end - start:
            if start < prune_base(self.conn):
                raise PrunedRange(f"leaves {start}..{end} were pruned")
            raise LogBroken("the events table has a gap", seq=_first_gap(rows, start))
        return [bytes(h) for _, h in rows]

    def _bucket(self, start: int, end: int) -> list[bytes]:
        lo = start - start % BUCKET
        hi = min(lo + BUCKET, self.size)
        key = (lo, hi)
        if key not in self._buckets:
            self._buckets[key] = self.leaves(lo, hi)
        leaves = self._buckets[key]
        return leaves[start - lo : end - lo]

    def forget(self) -> None:
        """Drop cached leaves and subtree hashes (keeps memory bounded on long streams)."""
        self._buckets.clear()
        self._memo.clear()

    def prefetch(self, ranges: list[tuple[int, int]]) -> None:
        """Load the stored nodes for these perfect aligned ranges in one query (into the memo)."""
        wanted = {}
        for start, end in ranges:
            n = end - start
            if (start, end) not in self._memo and n >= BUCKET and n & (n - 1) == 0 and start % n == 0:
                wanted[(n.bit_length() - 1, start // n)] = (start, end)
        if not wanted:
            return
        from sqlalchemy import and_, or_

        clause = or_(*(and_(AuditTreeNode.level == lv, AuditTreeNode.idx == idx) for lv, idx in wanted))
        for level, idx, h in self.conn.execute(
            select(AuditTreeNode.level, AuditTreeNode.idx, AuditTreeNode.hash).where(clause)
        ).all():
            self._memo[wanted[(level, idx)]] = bytes(h)

    def node(self, level: int, idx: int) -> bytes | None:
        h = self.conn.scalar(select(AuditTreeNode.hash).where(AuditTreeNode.level == level, AuditTreeNode.idx == idx))
        return bytes(h) if h is not None else None

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range that appears in the RFC 9162 recursion."""
        key = (start, end)
        if key in self._memo:
            return self._memo[key]
        n = end - start
        h = None
        if n >= BUCKET and n & (n - 1) == 0 and start % n == 0:
            h = self.node(n.bit_length() - 1, start // n)
        if h is None:
            if n <= BUCKET and start // BUCKET == (end - 1) // BUCKET:
                h = merkle.root_of(self._bucket(start, end))
            else:
                k = merkle.split_point(n)
                h = merkle.node_hash(self.subtree(start, start + k), self.subtree(start + k, end))
        self._memo[key] = h
        return h

    def root(self) -> bytes:
        return merkle.EMPTY_ROOT if self.size == 0 else self.subtree(0, self.size)


def _first_gap(rows, start: int) -> int:
    expected = start + 1
    for seq, _ in rows:
        if seq != expected:
            return expected
        expected += 1
    return expected
