"""Who may call the API: authenticated users whose role groups can view the resource.

Reads need the model's ``view`` permission (every role group, including Viewer, holds it).
Writes are decided by the services themselves (``require_perm``), the same checks the admin
gets, so a Viewer is refused with 403 whatever the door.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission


class CanViewModel(BasePermission):
    message = "Your roles do not allow you to view this."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        opts = view.permission_model._meta
        return user.has_perm(f"{opts.app_label}.view_{opts.model_name}")
