"""The communication policy in the admin: one row, edited through
``communication_policy_update`` (the API's service: the same validation), with its history."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from incidents.admin.common import NoRevertMixin, ServiceWriteAdminMixin, WriteServices

from ..models import CommunicationPolicy
from ..services.policy import communication_policy_update


@admin.register(CommunicationPolicy)
class CommunicationPolicyAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(instance="policy", update=communication_policy_update)
    list_display = ("__str__", "approval_severities", "first_update_minutes", "reminder_minutes")
    fields = ("approval_severities", "first_update_minutes", "reminder_minutes")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # one row, seeded

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
