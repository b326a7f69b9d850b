"""Related rows of a page of incidents, read in one query per relation as plain values.

A list page shows each incident's service slugs and role holders. Loading them as model
instances through ``prefetch_related`` costs several times the queries themselves (a model
per service, assignment, role and user, a queryset clone per row and relation); these two
``values_list`` queries give the serializer exactly what it shows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ..models import Incident, RoleAssignment
from ..serializers import ASSIGNMENTS, SERVICES


def attach_related(incidents: Sequence[Incident]) -> None:
    """Store each incident's service slugs and role holders where the serializer reads them."""
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
        name = f"{first} {last}".strip() or username
        holders[incident_id][key] = {"id": user_id, "username": username, "name": name}
    for incident in incidents:
        incident.__dict__[SERVICES] = slugs.get(incident.pk, [])
        incident.__dict__[ASSIGNMENTS] = holders.get(incident.pk, {})
