"""Pieces shared by the incident core's admin pages."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest


class ReadOnlyAdminMixin:
    """Records written only by the services: shown, never added, edited or deleted here."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class NoRevertMixin:
    """simple-history's history is shown; its "revert" would save around the services."""

    def revert_disabled(self, request: HttpRequest, obj: object = None) -> bool:
        return True

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        if request.method == "POST":
            raise PermissionDenied
        return super().history_form_view(request, object_id, version_id, extra_context)
