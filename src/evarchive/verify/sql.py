"""Small SQL helpers the checks share: rows as dicts, IN (...) in chunks, quoting, column facts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

SQL_CHUNK = 500  # keys per IN (...) query: well under SQLite's variable limit


def dict_rows(db: Any, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
    """Rows as dicts straight from the cursor (sqlite-utils' query() adds per-row overhead)."""
    cursor = db.execute(sql, list(params))
    cols = [d[0] for d in cursor.description]
    return [dict(zip(cols, row, strict=True)) for row in cursor.fetchall()]


def in_chunks(values: Iterable[Any]) -> Iterator[tuple[list[Any], str]]:
    """(chunk, '?,?,...') pairs for IN (...) queries over any number of values."""
    items = list(values)
    for i in range(0, len(items), SQL_CHUNK):
        part = items[i:i + SQL_CHUNK]
        yield part, ",".join("?" for _ in part)


def bindable(key: Any) -> bool:
    """Can this JSON value be a row key in SQL? (Lists, objects, null and huge ints never are.)"""
    if isinstance(key, int):
        return -(1 << 63) <= key < (1 << 63)
    return isinstance(key, (str, float))


def sql_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def columns_of(db: Any, table: str) -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA table_info({sql_name(table)})")]


def text_affinity(db: Any, table: str) -> set[str]:
    """Columns with TEXT affinity: SQLite stores any number put there as text, so they never hold a REAL."""
    out = set()
    for row in db.execute(f"PRAGMA table_info({sql_name(table)})"):
        decl = (row[2] or "").upper()
        if "INT" not in decl and any(t in decl for t in ("CHAR", "CLOB", "TEXT")):
            out.add(row[1])
    return out
