"""Who may call the API: authenticated users whose role groups can view the resource.

Reads need the model's ``view`` permission (every role group, including Viewer, holds it).
Writes are decided by the services themselves (``require_perm``), the same checks the admin
gets, so a Viewer is refused with 403 whatever the door.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from rest_framework.permissions import BasePermission

from ..prepared import prepared_cursor

# The backends whose permissions permissions_held reads itself: Django's ModelBackend, and
# django-axes's standalone backend, which grants none.
_READ_HERE = {
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
}


def permissions_held(user: Any, perms: Iterable[str]) -> set[str]:
    """Those of ``perms`` (``"app_label.codename"``) that ``user.has_perm`` grants, in one
    query for the lot. The first ``has_perm`` of a request loads every permission of the user
    and of their groups (two queries, about a hundred rows); an API read needs a handful.
    With other authentication backends, ``has_perm`` answers."""
    perms = set(perms)
    if not (user.is_active and perms):
        return set()
    if user.is_superuser:
        return perms
    if hasattr(user, "_perm_cache") or not set(settings.AUTHENTICATION_BACKENDS) <= _READ_HERE:
        return {perm for perm in perms if user.has_perm(perm)}
    # Kept on the user object, as Django keeps its own permission cache: the same user asking
    # again (a second check in one request) costs nothing.
    known: dict[str, bool] = user.__dict__.setdefault("_vigil_perms_held", {})
    missing = sorted(perms - known.keys())
    if missing:
        with prepared_cursor() as cursor:
            cursor.execute(_held_sql(len(missing)), [*missing, user.pk, user.pk])
            granted = {name for (name,) in cursor.fetchall()}
        known.update({name: name in granted for name in missing})
    return {perm for perm in perms if known[perm]}


@cache
def _held_sql(count: int) -> str:
    # The names of the asked permissions granted to the user directly or through a group:
    # plain SQL, as the ORM spends more time compiling this than the database running it.
    user_model = get_user_model()
    q = connection.ops.quote_name
    direct = user_model.user_permissions.through._meta
    member = user_model.groups.through._meta
    granted = Group.permissions.through._meta
    name = f"{q('c')}.{q('app_label')} || '.' || {q('p')}.{q('codename')}"
    return (
        f"SELECT {name} FROM {q(Permission._meta.db_table)} p "
        f"JOIN {q(ContentType._meta.db_table)} c ON c.id = p.content_type_id "
        f"WHERE {name} IN ({', '.join(['%s'] * count)}) "
        f"AND (p.id IN (SELECT d.permission_id FROM {q(direct.db_table)} d "
        f"WHERE d.{q(direct.get_field(user_model._meta.model_name).column)} = %s) "
        f"OR p.id IN (SELECT g.permission_id FROM {q(granted.db_table)} g "
        f"JOIN {q(member.db_table)} m ON m.group_id = g.group_id "
        f"WHERE m.{q(member.get_field(user_model._meta.model_name).column)} = %s))"
    )


class CanViewModel(BasePermission):
    """A view may name ``prefetch_permissions``, others it will check for this request: they
    are read in the same query, and every answer is kept as ``request.permissions`` (name →
    held)."""

    message = "Your roles do not allow you to view this."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        opts = view.permission_model._meta
        perm = f"{opts.app_label}.view_{opts.model_name}"
        checked = {perm, *getattr(view, "prefetch_permissions", ())}
        held = permissions_held(user, checked)
        request.permissions = {name: name in held for name in checked}
        return perm in held
