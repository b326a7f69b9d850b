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
# sets another), the list's rows are built as JSON text by the page query itself: no model
# instances, no date-time parsing and formatting in Python, no serializer walk per field. The
# text is IncidentSerializer's representation up to and including ``roles``; the view appends
# ``actions`` (per status and user) and ``url``. tests/incidents/test_api_list_rows_pg.py checks
# the two give the same incidents field for field; a field added to the serializer must be
# added here too (the test fails until it is).

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
    sql, report_params, active = _json_row_sql()
    return RawSQL(sql, (*report_params, *active, now, *active, now))


def _iso(column: str) -> str:
    # iso(value) in UTC: seconds always, microseconds only when there are any, "Z"; NULL stays
    # NULL. One to_char per value, not three: eleven columns, a statement parsed on every
    # request.
    return (
        f"replace(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
        "'.000000Z', 'Z')"
    )


@cache
def _json_row_sql(alias: str = "") -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    # ``alias``: the name the statement gives the incident table, if it gives one.
    from django.contrib.auth import get_user_model

    from ..models import REPORT_STATUS, ResponseRole, Service

    q = connection.ops.quote_name
    table = q(Incident._meta.db_table)

    def col(name: str) -> str:
        return f"{alias or table}.{q(name)}"

    user_table = q(get_user_model()._meta.db_table)
    through = Incident.services.through._meta
    services = (
        "(SELECT COALESCE(json_agg(s.slug ORDER BY s.name, s.id), '[]'::json) "
        f"FROM {q(through.db_table)} l JOIN {q(Service._meta.db_table)} s "
        f"ON s.id = l.{q(through.get_field('service').column)} "
        f"WHERE l.{q(through.get_field('incident').column)} = {col('id')})"
    )
    # user_ref: the full name ("first last", stripped), else the username.
    roles = (
        "(SELECT COALESCE(json_object_agg(r.key, json_build_object("
        "'id', u.id, 'username', u.username, 'name', "
        "COALESCE(NULLIF(btrim(u.first_name || ' ' || u.last_name, E' \\t\\n\\r\\f\\v'), ''), "
        "u.username)) ORDER BY r.position, r.id), '{}'::json) "
        f"FROM {q(RoleAssignment._meta.db_table)} a "
        f"JOIN {q(ResponseRole._meta.db_table)} r ON r.id = a.role_id "
        f"JOIN {user_table} u ON u.id = a.user_id "
        f"WHERE a.incident_id = {col('id')})"
    )
    duplicate = f"(SELECT d.number FROM {table} d WHERE d.id = {col('duplicate_of_id')})"
    active = tuple(status.value for status in ACTIVE_STATUSES)
    report_status = (
        f"CASE {col('status')} " + " ".join("WHEN %s THEN %s" for _ in REPORT_STATUS) + " END"
    )
    report_params = tuple(v for s, r in REPORT_STATUS.items() for v in (s.value, r.value))
    marks = ", ".join("%s" for _ in active)
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
    fields = [
        ("id", col("number")),
        ("title", col("title")),
        ("summary", col("summary")),
        ("severity", col("severity_id")),
        ("impact", col("impact")),
        ("urgency", col("urgency")),
        ("priority", col("priority")),
        ("status", col("status")),
        ("report_status", report_status),
        ("detection_source", col("detection_source")),
        ("services", services),
        ("customer_facing", col("customer_facing")),
        ("affected_users", col("affected_users")),
        ("business_impact", col("business_impact")),
        ("root_cause", col("root_cause")),
        ("resolution", col("resolution")),
        ("lessons_learned", col("lessons_learned")),
        ("cancel_reason", col("cancel_reason")),
        ("duplicate_of", duplicate),
        *(
            (name, _iso(col(name)))
            for name in (
                "impact_started_at",
                "detected_at",
                "acknowledged_at",
                "mitigated_at",
                "resolved_at",
                "closed_at",
                "cancelled_at",
                "created_at",
                "updated_at",
            )
        ),
        (
            "sla",
            "json_build_object("
            f"'response_due', {_iso(col('response_due_at'))}, "
            f"'resolution_due', {_iso(col('resolution_due_at'))}, "
            f"'response_breached', {response_breached}, "
            f"'resolution_breached', {resolution_breached})",
        ),
        ("roles", roles),
    ]
    body = ", ".join(f"'{name}', {expression}" for name, expression in fields)
    # Placeholders, in order: the report statuses, then each breach test's active statuses
    # and its "now" (json_row fills them).
    return f"json_build_object({body})::text", report_params, active


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
    _, report_params, active = _json_row_sql()
    params: list[Any] = [*report_params, *active, now, *active, now]
    for _, values in filters:
        params.extend(values)
    if before is not None or after is not None:
        field = Incident._meta.get_field(position)
        params.append(field.to_python(after if before is None else before))
    params += [limit, offset]
    with connection.cursor() as cursor:
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

    row_sql, _, _ = _json_row_sql(alias)
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
