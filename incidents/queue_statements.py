"""The SQL of :mod:`incidents.queue`: the claim statement, the bookkeeping writes that commit
without waiting for the WAL flush on PostgreSQL, and model instances built from the rows a
statement returns."""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.models.sql import UpdateQuery

__all__ = [
    "UNSYNCED",
    "bookkeeping",
    "bookkeeping_update",
    "claim_sql",
    "columns_sql",
    "complete_many_sql",
    "complete_sql",
    "row_from_db",
    "rows_from_db",
]

# The claim statement of each (model, database vendor, due only, relation joined, number of
# rows), built once.
_CLAIM_SQL: dict[tuple[type, str, bool, str | None, int], str] = {}
# The statement recording one send, per (model, database vendor, error field, the fields it
# sets), built once.
_COMPLETE_SQL: dict[tuple[type, str, str, tuple[str, ...]], str] = {}
# The statement recording several sends at once, per (model, database vendor, error field, the
# fields each row gets, number of rows), built once.
_COMPLETE_MANY_SQL: dict[tuple[type, str, str, tuple[str, ...], int], str] = {}


# Written right after the WHERE of every bookkeeping statement: an SQL comment, ignored where it
# stays (SQLite, a caller's transaction). Outside a transaction on PostgreSQL,
# :func:`bookkeeping` puts the condition below in its place.
UNSYNCED = "/* unsynced */"
# ``SET LOCAL synchronous_commit TO OFF`` as a condition of the statement itself: a one-time
# filter (no column in it) that PostgreSQL evaluates once, before the statement writes
# anything, and that holds. The setting lasts until the statement's implicit transaction ends,
# whose commit then does not wait for the WAL flush.
_UNSYNCED_CONDITION = "(SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL AND "


def bookkeeping(sql: str, params: list[Any], *, returning: bool = False) -> tuple[list[tuple], int]:
    """Run one write statement with :data:`UNSYNCED` right after its ``WHERE``; returns its rows
    (with ``returning``: the statement has a ``RETURNING`` clause) and its row count.

    Outside a transaction on PostgreSQL, the statement runs alone in one implicit transaction
    with ``synchronous_commit`` off (the mark becomes the setting), in one round trip: its
    commit does not wait for the WAL flush. Only for writes whose loss in a database crash
    means the work is done again (see the module docstring), never for the rows themselves.
    It binds on the server, so psycopg prepares it where statements are prepared
    (:mod:`incidents.prepared`). Inside the caller's transaction, and on SQLite, it is a plain
    statement: the setting would otherwise cover the caller's own writes."""
    if UNSYNCED not in sql:
        raise ValueError(f"A bookkeeping statement needs {UNSYNCED} after its WHERE: {sql}")
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor == "postgresql" and not db.in_atomic_block:
        sql = sql.replace(UNSYNCED, _UNSYNCED_CONDITION, 1)
        if not db.queries_logged and not db.execute_wrappers:
            # The driver's own cursor, in Django's translation of its errors. What Django's
            # cursor wrapper adds besides is the query log and the execute wrappers, neither
            # in use here.
            db.ensure_connection()
            with db.wrap_database_errors, psycopg.Cursor(db.connection) as cursor:
                cursor.execute(sql, params)
                return _result(cursor, returning)
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return _result(cursor, returning)


def _result(cursor: Any, returning: bool) -> tuple[list[tuple], int]:
    # Told, not asked: the cursor's description is built anew on each access.
    return (cursor.fetchall() if returning else []), cursor.rowcount


# Per model and database vendor: the attribute names of its concrete columns, and each column's
# database converters, the ORM's own (e.g. a JSON column's decoding, a datetime's time zone),
# worked out once.
_CONVERTERS: dict[tuple[type, str], tuple[list[str], list[tuple[Any, list[Any]]]]] = {}


def _converters(model: type[models.Model]) -> tuple[list[str], list[tuple[Any, list[Any]]]]:
    key = (model, connection.vendor)
    found = _CONVERTERS.get(key)
    if found is None:
        fields = model._meta.concrete_fields
        converters = []
        for field in fields:
            expression = field.get_col(model._meta.db_table)
            converters.append(
                (
                    expression,
                    connection.ops.get_db_converters(expression)
                    + field.get_db_converters(connection),
                )
            )
        found = _CONVERTERS[key] = ([f.attname for f in fields], converters)
    return found


def row_from_db(model: type[models.Model], values: tuple) -> Any:
    """An instance of ``model`` from a row of all its concrete columns, converted as the ORM
    would."""
    attnames, columns = _converters(model)
    converted = []
    for (expression, converters), value in zip(columns, values, strict=True):
        for converter in converters:
            value = converter(value, expression, connection)
        converted.append(value)
    return model.from_db(connection.alias, attnames, converted)


def rows_from_db(values: tuple, *models_: type[models.Model]) -> list[Any]:
    """One instance per model of ``models_`` from a row holding all their concrete columns one
    model after the other (as :func:`columns_sql` selects them); None for a model whose
    primary key is NULL (a LEFT JOIN that joined nothing)."""
    found: list[Any] = []
    start = 0
    for model in models_:
        fields = model._meta.concrete_fields
        part = values[start : start + len(fields)]
        start += len(fields)
        key = part[fields.index(model._meta.pk)]
        found.append(None if key is None else row_from_db(model, part))
    return found


def columns_sql(model: type[models.Model], alias: str) -> str:
    """Every concrete column of ``model`` under the table alias ``alias``, in field order (the
    order :func:`row_from_db` reads them in)."""
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(f.column)}" for f in model._meta.concrete_fields)


def bookkeeping_update(rows: models.QuerySet, values: dict[str, Any]) -> int:
    """``rows.update(**values)`` as one :func:`bookkeeping` statement; returns the row count."""
    query = rows.query.chain(UpdateQuery)
    query.add_update_values(values)
    sql, params = query.get_compiler(rows.db).as_sql()
    # The first WHERE of a compiled UPDATE is its own (any subquery comes after it).
    return bookkeeping(sql.replace(" WHERE ", f" WHERE {UNSYNCED}", 1), list(params))[1]


def claim_sql(model: type[models.Model], *, due_only: bool, related: str | None, count: int) -> str:
    """``UPDATE … SET status = running, claimed_at = now, attempts = attempts + 1 WHERE id
    (= one | IN several) AND <claimable> RETURNING <every column>``; with ``related`` (a
    foreign key), as a common table expression joined to that row's columns (PostgreSQL)."""
    key = (model, connection.vendor, due_only, related, count)
    sql = _CLAIM_SQL.get(key)
    if sql is None:
        meta = model._meta
        quote = connection.ops.quote_name
        col = {
            name: quote(meta.get_field(name).column)
            for name in ("status", "claimed_at", "attempts", "next_attempt_at")
        }
        due = f" AND {col['next_attempt_at']} <= %s" if due_only else ""
        match = "= %s" if count == 1 else f"IN ({', '.join(['%s'] * count)})"
        columns = [quote(f.column) for f in meta.concrete_fields]
        sql = (
            f"UPDATE {quote(meta.db_table)} SET {col['status']} = %s, "
            f"{col['claimed_at']} = %s, {col['attempts']} = {col['attempts']} + 1 "
            f"WHERE {UNSYNCED}{quote(meta.pk.column)} {match} AND (({col['status']} = %s{due}) OR "
            f"({col['status']} = %s AND ({col['claimed_at']} IS NULL OR "
            f"{col['claimed_at']} <= %s))) "
            f"RETURNING {', '.join(columns)}"
        )
        if related:
            field = meta.get_field(related)
            target = field.related_model._meta
            sql = (
                f"WITH c AS ({sql}) SELECT {columns_sql(model, 'c')}, "
                f"{columns_sql(field.related_model, 'r')} "
                f"FROM c LEFT JOIN {quote(target.db_table)} r "
                f"ON r.{quote(field.target_field.column)} = c.{quote(field.column)}"
            )
        _CLAIM_SQL[key] = sql
    return sql


def complete_sql(model: type[models.Model], *, error_field: str, names: tuple[str, ...]) -> str:
    """``UPDATE … SET status = %s, <error> = %s, <name> = %s, … WHERE id = %s AND claimed_at =
    %s AND status IN (%s, %s)``: one claimed row done, with the values of ``names``."""
    key = (model, connection.vendor, error_field, names)
    sql = _COMPLETE_SQL.get(key)
    if sql is None:
        meta = model._meta
        quote = connection.ops.quote_name
        columns = ["status", error_field, *names]
        assignments = ", ".join(f"{quote(meta.get_field(n).column)} = %s" for n in columns)
        sql = _COMPLETE_SQL[key] = (
            f"UPDATE {quote(meta.db_table)} SET {assignments} "
            f"WHERE {UNSYNCED}{quote(meta.pk.column)} = %s AND "
            f"{quote(meta.get_field('claimed_at').column)} = %s AND "
            f"{quote(meta.get_field('status').column)} IN (%s, %s)"
        )
    return sql


def complete_many_sql(
    model: type[models.Model], *, error_field: str, names: list[str], count: int
) -> str:
    """``UPDATE … SET status = %s, <error> = %s, <name> = CASE id WHEN %s THEN %s … END, …
    WHERE id IN (…) AND claimed_at = %s AND status IN (%s, %s)``: ``count`` rows each given
    its own value of every field of ``names``. The parameters, in order: the done status, the
    empty error, then per name each row's (id, value), then the ids, the claim stamp, and the
    running and pending statuses. Each CASE is cast to its column's type where the database
    needs it to unify the values (as the ORM's own ``Case`` is)."""
    key = (model, connection.vendor, error_field, tuple(names), count)
    sql = _COMPLETE_MANY_SQL.get(key)
    if sql is None:
        meta = model._meta
        quote = connection.ops.quote_name
        pk = quote(meta.pk.column)
        whens = " ".join(["WHEN %s THEN %s"] * count)
        assignments = [
            f"{quote(meta.get_field('status').column)} = %s",
            f"{quote(meta.get_field(error_field).column)} = %s",
        ]
        for name in names:
            field = meta.get_field(name)
            case = connection.ops.unification_cast_sql(field) % f"CASE {pk} {whens} END"
            assignments.append(f"{quote(field.column)} = {case}")
        sql = (
            f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} "
            f"WHERE {UNSYNCED}{pk} IN ({', '.join(['%s'] * count)}) AND "
            f"{quote(meta.get_field('claimed_at').column)} = %s AND "
            f"{quote(meta.get_field('status').column)} IN (%s, %s)"
        )
        _COMPLETE_MANY_SQL[key] = sql
    return sql
