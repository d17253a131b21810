"""Keyset paging for every list: one cursor format, one stable order per list, filtered in SQL.

A list is ordered by columns that are unique together (a timestamp or a name, then the id).
A page asks the database for `limit + 1` rows after the cursor, so it knows whether more
follow, and the next cursor names the last row's values. Rows inserted while a client pages
land before the cursor or in their own place: they never shift, repeat or hide the rows still
to come, as an offset would. Every scope and filter is part of the same SQL query, so a page
is never emptied or shortened by filtering afterwards.

A cursor is opaque to clients: URL-safe base64 of the JSON array `[list name, values...]`.
It is validated, not signed: it only chooses where to resume inside the caller's own,
SQL-scoped list, so a forged one can reveal nothing a first page would not. A cursor of
another list, or one whose values are not the list's column types, is refused
(`InvalidCursor`, 422 `invalid_cursor`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.types import TypeDecorator

from gateway.errors import InvalidInput

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_CURSOR_LENGTH = 2048  # a name of 200 characters, in UTF-8, in base64

T = TypeVar("T")


class InvalidCursor(InvalidInput):
    code = "invalid_cursor"
    message = "The cursor is not one this list gave out."


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list in its stable order; `next_cursor` continues after its last item (None: no more)."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class Order:
    """A list's stable order: `columns` are unique together, all ascending or all descending.

    `name` goes into every cursor, so a cursor of one list is refused by another.
    """

    name: str
    columns: tuple[InstrumentedAttribute, ...]
    descending: bool = False

    def page(self, db: Session, query: Select, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> Page:
        """One page of `query` (entities: `select(Model)`) after `cursor`."""
        return self._page(list(db.scalars(self._query(query, limit, cursor))), limit)

    def page_rows(self, db: Session, query: Select, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> Page:
        """One page of `query` (several columns, each row a `Row` naming the order's columns) after `cursor`."""
        return self._page(list(db.execute(self._query(query, limit, cursor)).all()), limit)

    def _query(self, query: Select, limit: int, cursor: str | None) -> Select:
        if cursor:
            query = query.where(self.after(cursor))
        ordered = [c.desc() if self.descending else c.asc() for c in self.columns]
        return query.order_by(*ordered).limit(_clamp(limit) + 1)

    def _page(self, rows: list, limit: int) -> Page:
        limit = _clamp(limit)
        more = len(rows) > limit
        return Page(rows[:limit], self.cursor_of(rows[limit - 1]) if more else None)

    def cursor_of(self, row: Any) -> str:
        values = [_encode(getattr(row, c.key)) for c in self.columns]
        raw = json.dumps([self.name, *values], separators=(",", ":"), ensure_ascii=False).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def after(self, cursor: str) -> ColumnElement[bool]:
        """The SQL condition for rows after `cursor` in this order: (a > x) or (a = x and b > y) ..."""
        values = self._decode(cursor)
        clauses = []
        for i, (column, value) in enumerate(zip(self.columns, values, strict=True)):
            beyond = column < value if self.descending else column > value
            clauses.append(and_(*[c == v for c, v in zip(self.columns[:i], values[:i], strict=True)], beyond))
        return or_(*clauses)

    def _decode(self, cursor: str) -> list:
        try:
            if len(cursor) > MAX_CURSOR_LENGTH:
                raise ValueError
            decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            if not isinstance(decoded, list) or len(decoded) != len(self.columns) + 1 or decoded[0] != self.name:
                raise ValueError
            return [_decode(column, value) for column, value in zip(self.columns, decoded[1:], strict=True)]
        except (ValueError, TypeError, binascii.Error):  # JSON and Unicode errors are ValueErrors
            raise InvalidCursor() from None


def every(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
    """Every item of a list, page by page (for a choice that offers them all, or the CLI)."""
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _clamp(limit: int) -> int:
    return max(1, min(limit, MAX_LIMIT))


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str | int) and not isinstance(value, bool):
        return value
    raise TypeError(f"cannot page on a {type(value).__name__}")  # a programming error: the order's columns


def _decode(column: InstrumentedAttribute, value: Any) -> Any:
    sql_type = column.type
    if isinstance(sql_type, TypeDecorator):  # UTCDateTime: a datetime underneath
        sql_type = sql_type.impl_instance
    kind = sql_type.python_type
    if kind is datetime:
        if not isinstance(value, str):
            raise ValueError
        stamp = datetime.fromisoformat(value)
        if stamp.tzinfo is None:
            raise ValueError
        return stamp
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str) and value:
        return value
    raise ValueError
