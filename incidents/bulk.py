"""One INSERT for many new rows, as ``QuerySet.bulk_create`` writes it, without the ORM's
statement compiler.

Vigil's hot paths (a batch of alerts opening incidents, an escalation sweep's pages) insert
tens of rows of wide models at a time. ``bulk_create`` spends more CPU compiling that one
statement (a compiler, placeholders and ``prepare_value`` calls per value) than the database
spends running it, and on SQLite that CPU is spent holding the only write lock. This module
builds the statement once per model and row count, and prepares each value with its field's
own ``pre_save`` and ``get_db_prep_save``, which is what the compiler calls in the end.

Only for what ``bulk_create`` would do the plain way: rows without a primary key yet, no
expression or database default among the values, no field with a placeholder of its own;
anything else is handed to ``bulk_create`` itself. Like ``bulk_create``, it sends no signals.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, NotSupportedError, connections, models
from django.db.models.constants import OnConflict
from django.db.models.expressions import DatabaseDefault

__all__ = ["rows_insert"]

# Per (model, vendor): the fields written (every concrete one but the primary key), whether
# each writes None as NULL, the head of the statement (the table and its columns) and whether
# the fields allow the plain statement at all (_plain), worked out once.
_PLANS: dict[tuple[type, str], tuple[list[models.Field], list[bool], str, bool]] = {}
# Per (model, vendor, rows, ignore conflicts, returned columns): the statement.
_SQL: dict[tuple[type, str, int, bool, tuple[str, ...]], str] = {}


def _plan(model: type[models.Model], db: Any) -> tuple[list[models.Field], list[bool], str, bool]:
    key = (model, db.vendor)
    plan = _PLANS.get(key)
    if plan is None:
        meta = model._meta
        fields = [f for f in meta.concrete_fields if not f.primary_key]
        null = [_none_is_null(f, db) for f in fields]
        quote = db.ops.quote_name
        head = f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
        plan = _PLANS[key] = (fields, null, head, _plain(fields, db))
    return plan


def _none_is_null(field: models.Field, db: Any) -> bool:
    try:
        return field.get_db_prep_save(None, db) is None
    except Exception:
        return False


def _sql(
    db: Any,
    model: type[models.Model],
    head: str,
    fields: list[models.Field],
    count: int,
    ignore: bool,
    back: list[str],
) -> str:
    """The statement for ``count`` rows: on PostgreSQL, as ``bulk_create`` writes it there,
    one array per column (``SELECT * FROM UNNEST(...)``; a short statement whatever the
    number of rows, which psycopg parses once and keeps), elsewhere a ``VALUES`` row each."""
    unnest = db.vendor == "postgresql"
    key = (model, db.vendor, 0 if unnest else count, ignore, tuple(back))
    sql = _SQL.get(key)
    if sql is None:
        quote = db.ops.quote_name
        if unnest:
            # Without the type's parameters (varchar[], not varchar(50)[]), as Django's.
            types = [f"(%s)::{field.db_type(db).split('(')[0]}[]" for field in fields]
            sql = f"{head} SELECT * FROM UNNEST({', '.join(types)})"
        else:
            row = "(" + ", ".join(["%s"] * len(fields)) + ")"
            sql = f"{head} VALUES {', '.join([row] * count)}"
        if ignore:
            sql += " ON CONFLICT DO NOTHING"
        sql += " RETURNING " + ", ".join(quote(column) for column in back)
        sql = _SQL[key] = sql
    return sql


def _plain(fields: list[models.Field], db: Any) -> bool:
    """No field with a placeholder of its own or a database default, and every one of a
    standard type (an array of which PostgreSQL's UNNEST takes): Django's own conditions."""
    return not any(
        hasattr(f, "get_placeholder")
        or f.has_db_default()
        or (f.target_field if f.is_relation else f).get_internal_type() not in db.data_types
        for f in fields
    )


def rows_insert(
    objs: Sequence[models.Model], *, ignore_conflicts: bool = False, key: str | None = None
) -> list[models.Model]:
    """Insert ``objs`` (all of one model, none saved yet) in as few statements as the
    database's parameter limit allows, and set each inserted one's primary key, as
    ``bulk_create`` does. Returns the objects inserted.

    With ``ignore_conflicts``, a row that breaks a unique constraint is skipped (``ON
    CONFLICT DO NOTHING``) and ``key`` names the unique field that tells the rows apart: only
    the rows inserted are returned, with their keys set; the others keep no primary key."""
    if not objs:
        return []
    model = type(objs[0])
    # The connection itself, not django.db.connection: each attribute read through that proxy
    # costs a context-local lookup, and preparing a value reads several.
    db = connections[DEFAULT_DB_ALIAS]
    fields, null, head, plain = _plan(model, db)
    if (
        not db.features.can_return_rows_from_bulk_insert
        or not plain
        or any(obj.pk is not None for obj in objs)
        or (ignore_conflicts and key is None)
    ):
        return _bulk_create(db, model, objs, ignore_conflicts=ignore_conflicts, key=key)
    meta = model._meta
    back = [meta.pk.column]
    if ignore_conflicts:
        back.append(meta.get_field(key).column)
    prepared: list[list[Any]] = []
    for obj in objs:
        obj._prepare_related_fields_for_save(operation_name="bulk_create")
        values = []
        for field, none_is_null in zip(fields, null, strict=True):
            value = field.pre_save(obj, True)
            if value is None and none_is_null:
                values.append(None)
                continue
            if isinstance(value, DatabaseDefault) or hasattr(value, "resolve_expression"):
                return _bulk_create(db, model, objs, ignore_conflicts=ignore_conflicts, key=key)
            values.append(field.get_db_prep_save(value, db))
        prepared.append(values)
    size = _batch_size(db, fields, objs)
    inserted: list[models.Model] = []
    alias = db.alias
    with db.cursor() as cursor:
        for start in range(0, len(objs), size):
            chunk = objs[start : start + size]
            rows = prepared[start : start + size]
            sql = _sql(db, model, head, fields, len(chunk), ignore_conflicts, back)
            if db.vendor == "postgresql":
                cursor.execute(sql, [list(column) for column in zip(*rows, strict=True)])
            else:
                cursor.execute(sql, [value for values in rows for value in values])
            returned = cursor.fetchall()
            if ignore_conflicts:
                by_key = {str(found): pk for pk, found in returned}
                attname = meta.get_field(key).attname
                matched = []
                for obj in chunk:
                    # A key twice among the rows: the first one's row was written.
                    pk = by_key.pop(str(getattr(obj, attname)), None)
                    if pk is not None:
                        obj.pk = pk
                        matched.append(obj)
            else:
                # RETURNING gives the rows in the order of VALUES, as bulk_create relies on.
                matched = list(chunk)
                for obj, (pk,) in zip(matched, returned, strict=True):
                    obj.pk = pk
            for obj in matched:
                obj._state.adding = False
                obj._state.db = alias
            inserted.extend(matched)
    return inserted


def _batch_size(db: Any, fields: list[models.Field], objs: Sequence[models.Model]) -> int:
    """Rows per statement. On SQLite, as many as its limit on a statement's parameters allows
    (32,766 since SQLite 3.32, asked of the connection), not Django's 999 of older builds."""
    if db.vendor == "sqlite":
        db.ensure_connection()
        limit = db.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        return max(1, limit // len(fields))
    return max(1, db.ops.bulk_batch_size(fields, objs))


def _bulk_create(
    db: Any,
    model: type[models.Model],
    objs: Sequence[models.Model],
    *,
    ignore_conflicts: bool,
    key: str | None,
) -> list[models.Model]:
    """The ORM's own statement. With ``ignore_conflicts``, ``bulk_create`` sets no primary
    keys, so this asks its insert query for them, by ``key``: a database that cannot return
    rows from a bulk insert (an SQLite older than 3.35) is not supported there."""
    if not ignore_conflicts:
        return model._default_manager.bulk_create(list(objs))
    if key is None or not db.features.can_return_rows_from_bulk_insert:
        raise NotSupportedError("rows_insert(ignore_conflicts=True) needs a key and RETURNING")
    meta = model._meta
    key_field = meta.get_field(key)
    for obj in objs:
        obj._prepare_related_fields_for_save(operation_name="bulk_create")
    returned = model._default_manager._insert(
        list(objs),
        fields=[f for f in meta.concrete_fields if not f.primary_key],
        returning_fields=[meta.pk, key_field],
        on_conflict=OnConflict.IGNORE,
    )
    # A single row that was skipped comes back as [None].
    by_key = {str(v[1]): v[0] for v in returned if v and v[0] is not None}
    inserted = []
    for obj in objs:
        pk = by_key.pop(str(getattr(obj, key_field.attname)), None)
        if pk is not None:
            obj.pk = pk
            obj._state.adding, obj._state.db = False, db.alias
            inserted.append(obj)
    return inserted
