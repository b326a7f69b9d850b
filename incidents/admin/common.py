"""Pieces shared by the incident core's admin pages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import router, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from ..errors import VigilError
from ..models import Source
from .forms import attach_errors


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


# --- admin pages whose writes are service calls -------------------------------------------------


class ServiceRejected(Exception):
    """A service refused what the admin asked; carries the refusal to the page shown next."""

    def __init__(self, error: VigilError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class WriteServices:
    """The services a :class:`ServiceWriteAdminMixin` page writes through.

    ``create(actor=, source=, **fields)``, ``update(<instance>=row, actor=, source=, **changes)``
    and ``delete(<instance>=row, actor=, source=)``, where ``instance`` names the keyword the
    row goes by (``contact=``, ``cell=``). A missing service means the page cannot do that.
    """

    instance: str
    create: Callable[..., Any] | None = None
    update: Callable[..., Any] | None = None
    delete: Callable[..., Any] | None = None


class ServiceWriteAdminMixin:
    """A ModelAdmin whose add, change and delete call services, and do nothing else.

    ``save_model`` turns the form's cleaned values (all of them when adding, the changed ones
    when editing) into one service call with ``source="admin"``; ``delete_model`` and the
    "delete selected" action call the delete service. A refusal of the service (InvalidInput,
    ActionForbidden, ...) rolls the admin's transaction back: the change form is shown again
    with the refusal on the fields it names, a list or delete page says it in a message.
    There is no m2m or inline save (it would write around the service).
    """

    write_services: WriteServices

    # -- what the page may do follows from which services exist ---------------------------------

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self.write_services.create is not None and super().has_add_permission(request, *args)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.write_services.update is not None and super().has_change_permission(
            request, obj
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.write_services.delete is not None and super().has_delete_permission(
            request, obj
        )

    # -- the writes ----------------------------------------------------------------------------

    def service_fields(self, form: forms.ModelForm, *, change: bool) -> dict[str, Any]:
        """The form's values for the service: every field when adding, changed ones otherwise."""
        names = form.changed_data if change else list(form.fields)
        return {name: form.cleaned_data[name] for name in names if name in form.cleaned_data}

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        services = self.write_services
        try:
            if change:
                fields = self.service_fields(form, change=True)
                if not fields:
                    return
                saved = services.update(
                    **{services.instance: obj}, actor=request.user, source=Source.ADMIN, **fields
                )
            else:
                saved = services.create(
                    actor=request.user,
                    source=Source.ADMIN,
                    **self.service_fields(form, change=False),
                )
        except VigilError as exc:
            raise ServiceRejected(exc) from exc
        # The admin goes on with ``obj`` (log entry, message, redirect): give it what was saved.
        for field in obj._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding = False

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Nothing: the service wrote the row, and these pages have no m2m fields or inlines."""

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        services = self.write_services
        try:
            services.delete(**{services.instance: obj}, actor=request.user, source=Source.ADMIN)
        except VigilError as exc:
            raise ServiceRejected(exc) from exc

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        # All or nothing: "delete selected" reports one count for all of them.
        with transaction.atomic(using=router.db_for_write(self.model)):
            for obj in queryset.order_by("pk"):
                self.delete_model(request, obj)

    # -- refusals --------------------------------------------------------------------------------

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        rejection = getattr(request, "_vigil_rejection", None)
        if rejection is None:
            return form

        def clean(self: forms.ModelForm) -> dict[str, Any]:
            cleaned = super(rejected_form, self).clean()
            attach_errors(self, rejection)
            return cleaned

        rejected_form = type(form.__name__, (form,), {"clean": clean})
        return rejected_form

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceRejected as rejected:
            # The admin's transaction has rolled back, so nothing changed. Show the same
            # submission again, now with the refusal on the fields it names.
            request._vigil_rejection = rejected.error
            return super().changeform_view(request, object_id, form_url, extra_context)

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        # One transaction for the list's edits and actions, so a refusal of any row (or the
        # log entries "delete selected" writes first) rolls all of them back.
        try:
            with transaction.atomic(using=router.db_for_write(self.model)):
                return super().changelist_view(request, extra_context)
        except ServiceRejected as rejected:
            self.message_user(request, f"Nothing changed: {rejected.error.message}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request: HttpRequest, object_id: str, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ServiceRejected as rejected:
            self.message_user(request, f"Not deleted: {rejected.error.message}", messages.ERROR)
            opts = self.model._meta
            url = reverse(
                f"admin:{opts.app_label}_{opts.model_name}_change",
                args=[object_id],
                current_app=self.admin_site.name,
            )
            return HttpResponseRedirect(url)
