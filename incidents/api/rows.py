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
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import F, OuterRef, QuerySet
from django.db.models.functions import JSONObject

from ..models import Incident, RoleAssignment
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
