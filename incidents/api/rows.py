"""Related rows of a page of incidents, read as plain values.

A list page shows each incident's service slugs and role holders. Loading them as model
instances through ``prefetch_related`` costs several times the queries themselves (a model
per service, assignment, role and user, a queryset clone per row and relation). On PostgreSQL
they ride along in the page query as two array subqueries (``with_related``); elsewhere two
``values_list`` queries fetch them for the page (``attach_related``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import DateTimeField, F, OuterRef, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import JSONObject
from django.utils import timezone

from ..models import ACTIVE_STATUSES, Incident, RoleAssignment
from ..prepared import prepared_cursor
from ..serializers import ASSIGNMENTS, SERVICES

_ARRAYS = connection.vendor == "postgresql"


def with_related(queryset: QuerySet) -> QuerySet:
    """On PostgreSQL, annotate the page query with each incident's slugs and role holders."""
    if not _ARRAYS:
        return queryset
    return queryset.annotate(**_array_subqueries())


@cache
def _array_subqueries() -> dict[str, Any]:
    # Built once: annotate() resolves a copy of each expression for its own query.
    from django.contrib.postgres.expressions import ArraySubquery

    slugs = (
        Incident.services.through.objects.filter(incident_id=OuterRef("pk"))
        .order_by("service__name", "service_id")
        .values("service__slug")
    )
    holders = (
        RoleAssignment.objects.filter(incident_id=OuterRef("pk"))
        .order_by("role__position", "role_id")
        .values(
            holder=JSONObject(
                key=F("role__key"),
                id=F("user_id"),
                username=F("user__username"),
                first=F("user__first_name"),
                last=F("user__last_name"),
            )
        )
    )
    return {SERVICES: ArraySubquery(slugs), "api_holder_rows": ArraySubquery(holders)}


def _holder(row: dict[str, Any]) -> dict[str, Any]:
    name = f"{row['first']} {row['last']}".strip() or row["username"]
    return {"id": row["id"], "username": row["username"], "name": name}


def attach_related(incidents: Sequence[Incident]) -> None:
    """Store each incident's service slugs and role holders where the serializer reads them."""
    if _ARRAYS:
        for incident in incidents:
            rows = incident.__dict__.pop("api_holder_rows")
            incident.__dict__[ASSIGNMENTS] = {row["key"]: _holder(row) for row in rows}
        return
    ids = [incident.pk for incident in incidents]
    if not ids:
        return
    slugs: dict[int, list[str]] = defaultdict(list)
    links = (
        Incident.services.through.objects.filter(incident_id__in=ids)
        .order_by("service__name", "service_id")
        .values_list("incident_id", "service__slug")
    )
    for incident_id, slug in links:
        slugs[incident_id].append(slug)
    holders: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    assignments = (
        RoleAssignment.objects.filter(incident_id__in=ids)
        .order_by("role__position", "role_id")
        .values_list(
            "incident_id",
            "role__key",
            "user_id",
            "user__username",
            "user__first_name",
            "user__last_name",
        )
    )
    for incident_id, key, user_id, username, first, last in assignments:
        holders[incident_id][key] = _holder(
            {"id": user_id, "username": username, "first": first, "last": last}
        )
    for incident in incidents:
        incident.__dict__[SERVICES] = slugs.get(incident.pk, [])
        incident.__dict__[ASSIGNMENTS] = holders.get(incident.pk, {})


# --- Whole rows as JSON, built by PostgreSQL ----------------------------------------------------
#
# On PostgreSQL, with times shown in UTC (the API's zone for token clients unless the installation
# sets another), the list's rows come out of the page query as JSON text: no model instances, no
# date-time parsing and formatting in Python, no serializer walk per field. Each incident keeps
# the parts of its row that do not depend on the time of the request (``api_head``: ``id`` up to
# ``updated_at``; ``api_roles``), written by triggers (migration 0017); the page query adds
# ``sla``, whose breach flags depend on "now". The text is IncidentSerializer's representation up
# to and including ``roles``; the view appends ``actions`` (per status and user) and ``url``.
# tests/incidents/test_api_list_rows_pg.py checks the two give the same incidents field for
# field, after every kind of change that shows in a row; a field added to the serializer must be
# added to the trigger too (the test fails until it is).

_UTC_ZONES = {"UTC", "Etc/UTC", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu"}


def json_rows_supported() -> bool:
    """Whether the page query can build the rows: PostgreSQL, and the current zone is UTC."""
    if not _ARRAYS:
        return False
    zone = timezone.get_current_timezone()
    return zone is UTC or getattr(zone, "key", None) in _UTC_ZONES


def json_row(*, now: datetime) -> RawSQL:
    """The row as JSON text (``{...,"roles": {...}}``), for ``values(api_row=json_row(...))``
    on the incident list's queryset."""
    return RawSQL(_json_row_sql(), _json_row_params(now))


_ACTIVE = tuple(status.value for status in ACTIVE_STATUSES)


def _json_row_params(now: datetime) -> tuple[Any, ...]:
    # Each breach test's active statuses and its "now", in the order _json_row_sql uses them.
    return (*_ACTIVE, now, *_ACTIVE, now)


def _iso(column: str) -> str:
    # iso(value) in UTC: seconds always, microseconds only when there are any, "Z"; NULL stays
    # NULL. One to_char per value, not three. The triggers of migration 0017 format the stored
    # times the same way.
    return (
        f"replace(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
        "'.000000Z', 'Z')"
    )


@cache
def _json_row_sql(alias: str = "") -> str:
    # ``alias``: the name the statement gives the incident table, if it gives one.
    q = connection.ops.quote_name
    table = q(Incident._meta.db_table)

    def col(name: str) -> str:
        return f"{alias or table}.{q(name)}"

    marks = ", ".join("%s" for _ in _ACTIVE)
    response_breached = (
        f"({col('response_breach_recorded')} OR CASE WHEN {col('acknowledged_at')} IS NOT NULL "
        f"THEN {col('acknowledged_at')} > {col('response_due_at')} "
        f"ELSE {col('status')} IN ({marks}) AND %s > {col('response_due_at')} END)"
    )
    resolution_breached = (
        f"({col('resolution_breach_recorded')} OR CASE WHEN {col('resolved_at')} IS NOT NULL "
        f"THEN {col('resolved_at')} > {col('resolution_due_at')} "
        f"ELSE {col('status')} IN ({marks}) AND %s > {col('resolution_due_at')} END)"
    )
    sla = (
        "json_build_object("
        f"'response_due', {_iso(col('response_due_at'))}, "
        f"'resolution_due', {_iso(col('resolution_due_at'))}, "
        f"'response_breached', {response_breached}, "
        f"'resolution_breached', {resolution_breached})"
    )
    # The stored head has no closing brace; the separators are json_build_object's own.
    return (
        f"{col('api_head')} || ', \"sla\" : ' || {sla}::text "
        f"|| ', \"roles\" : ' || {col('api_roles')} || '}}'"
    )


def json_page_rows(
    *,
    filters: Sequence[tuple[str, Sequence[Any]]],
    ordering: Sequence[str],
    before: Any = None,
    after: Any = None,
    offset: int = 0,
    limit: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """A page of the list's rows built as JSON (``api_row``, as ``json_row``), read without a
    queryset: the incidents whose columns hold one of the values given (``filters``: column,
    values), in ``ordering``, those whose first ordering field is before or after the position
    given, from ``offset``, at most ``limit``. Each row also holds ``id``, ``status`` and the
    first ordering field, as ``values()`` would (an aware date-time as the text ``str()`` gives
    it, all the paginator needs). One query; its text is built once per shape.

    For the list's common requests (``IncidentListView``): a queryset's filtering, ordering,
    slicing and compiling cost more than PostgreSQL takes to answer them."""
    position = ordering[0].lstrip("-")
    shape = tuple((column, len(values)) for column, values in filters)
    sql, names = _page_sql(
        tuple(ordering), shape, before is not None, after is not None, settings.USE_TZ
    )
    params: list[Any] = list(_json_row_params(now))
    for _, values in filters:
        params.extend(values)
    if before is not None or after is not None:
        field = Incident._meta.get_field(position)
        params.append(field.to_python(after if before is None else before))
    params += [limit, offset]
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@lru_cache(maxsize=256)
def _page_sql(
    ordering: tuple[str, ...],
    shape: tuple[tuple[str, int], ...],
    before: bool,
    after: bool,
    use_tz: bool,
) -> tuple[str, tuple[str, ...]]:
    # The table is aliased: under 4 kB, psycopg keeps the statement's conversion (it parses
    # longer ones again on every execution).
    q = connection.ops.quote_name
    alias = "i"

    def col(name: str) -> str:
        return f"{alias}.{q(Incident._meta.get_field(name).column)}"

    row_sql = _json_row_sql(alias)
    position = ordering[0].lstrip("-")
    names = tuple(dict.fromkeys((position, "id", "status")))
    columns = [col(name) for name in names]
    if use_tz and isinstance(Incident._meta.get_field(position), DateTimeField):
        # The position as the paginator writes it in cursors, str() of the aware date-time in
        # UTC: loading it as a date-time costs more than the rest of the row, and the
        # paginator looks at two or three of them.
        columns[0] = (
            f"replace(to_char({columns[0]} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), "
            "'.000000', '') || '+00:00'"
        )
    conditions = [f"{col(column)} IN ({', '.join(['%s'] * count)})" for column, count in shape]
    if before:
        conditions.append(f"{col(position)} < %s")
    if after:
        conditions.append(f"{col(position)} > %s")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    order = ", ".join(
        f"{col(term.lstrip('-'))} {'DESC' if term.startswith('-') else 'ASC'}" for term in ordering
    )
    table = q(Incident._meta.db_table)
    sql = (
        f"SELECT {', '.join(columns)}, {row_sql} FROM {table} {alias}{where} "
        f"ORDER BY {order} LIMIT %s OFFSET %s"
    )
    return sql, (*names, "api_row")
