"""Status updates, the public posts about an incident: drafted, approved where the policy needs
it, published, and never changed afterwards (a correction is a new update).

Each step is one service, the only way to take it: it checks the actor's permission, locks the
update, returns early when the step already happened, checks its rule, saves with a history
record and writes a timeline entry on the incident (kind ``communication``), in one transaction.

* **The public title.** An update drafted without one gets :data:`TITLE_PROMPT`, never the
  incident's internal title; it cannot be approved or published until someone writes a real one.
* **Approval.** When the incident's severity is in the policy's ``approval_severities`` (Sev 1
  and 2 by default), only an approved update is published. The approver needs
  ``approve_statusupdate`` (the business liaison) and may not be the update's author. Editing an
  approved update sends it back to draft: the approval covers the text that is published.
* **Publishing** sets each affected component's status through ``component_status_set`` (an
  interval naming the update, the component's previous status kept on the update) and marks the
  public site stale.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from incidents.errors import InvalidInput
from incidents.models import Incident, Kind, Status
from incidents.services.common import audited_save, timeline_record

from ..errors import require
from ..markdown import markdown_to_html
from ..models import (
    Component,
    ComponentStatus,
    StatusUpdate,
    StatusUpdateComponent,
    UpdateKind,
    UpdateState,
    UpdateStatus,
)
from ..public.site import public_changed
from .clock import first_update_published
from .components import component_status_set
from .fanout import fanout_for_status_update
from .permissions import CommsForbidden, UpdateStateConflict
from .policy import communication_policy_get
from .social import social_post_draft

TITLE_PROMPT = "[Write a customer-facing title]"
TITLE_MAX = 200
BODY_MAX = 20_000
EDITABLE_FIELDS = ("public_title", "public_status", "body", "components")
IMMUTABLE = "Published updates are immutable: post a correction as a new update."

# A component and the status an update gives it.
Affected = list[tuple[Component, str]]


# --- input ---------------------------------------------------------------------------------------


def _title(value: str | None) -> str:
    title = " ".join((value or "").split())
    if not title:
        return TITLE_PROMPT
    if len(title) > TITLE_MAX:
        raise InvalidInput({"public_title": f"At most {TITLE_MAX} characters."})
    return title


def _public_status(value: Any) -> str:
    if value not in UpdateStatus.values:
        raise InvalidInput(
            {"public_status": f"One of {', '.join(UpdateStatus.values)} (got {value!r})."}
        )
    return value


def _body(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput({"body": "Write the update's text (Markdown)."})
    if len(value) > BODY_MAX:
        raise InvalidInput({"body": f"At most {BODY_MAX} characters."})
    return value


def _pairs(components: Any) -> list[tuple[Any, Any]]:
    if components is None:
        return []
    if isinstance(components, Mapping):
        return list(components.items())
    pairs = []
    for item in components:
        if isinstance(item, Mapping):
            pairs.append((item.get("component"), item.get("status", item.get("new_status"))))
        else:
            component, status = item
            pairs.append((component, status))
    return pairs


def resolve_components(components: Any) -> Affected:
    """``{component or code: new status}`` or a list of ``(component, status)`` pairs or
    ``{"component": ..., "status": ...}`` items, as components of the status page. Unknown codes,
    components whose service has no public name or is retired, repeats and unknown statuses are
    refused (InvalidInput naming them)."""
    pairs = _pairs(components)
    codes = [key for key, _ in pairs if isinstance(key, str)]
    by_code = {
        component.code: component
        for component in Component.objects.select_related("service").filter(service__slug__in=codes)
    }
    errors: dict[str, str] = {}
    affected: Affected = []
    seen: set[int] = set()
    for index, (key, status) in enumerate(pairs):
        field = f"components.{index}"
        component = key if isinstance(key, Component) else by_code.get(key)
        if component is None:
            errors[f"{field}.component"] = f"No component {key!r} on the status page."
            continue
        service = component.service
        if not (service.public_name or "").strip() or not service.is_active:
            errors[f"{field}.component"] = (
                f"{component.code!r} is not public (its service has no public name)."
            )
            continue
        if status not in ComponentStatus.values:
            errors[f"{field}.status"] = (
                f"One of {', '.join(ComponentStatus.values)} (got {status!r})."
            )
            continue
        if component.pk in seen:
            errors[f"{field}.component"] = f"{component.code!r} is named twice."
            continue
        seen.add(component.pk)
        affected.append((component, status))
    if errors:
        raise InvalidInput(errors)
    return affected


def _affected_now(update: StatusUpdate) -> Affected:
    return [(row.component, row.new_status) for row in update.affected.select_related("component")]


def _affected_set(affected: Iterable[tuple[Component, str]]) -> set[tuple[int, str]]:
    return {(component.pk, status) for component, status in affected}


def _write_affected(update: StatusUpdate, affected: Affected) -> None:
    update.affected.all().delete()
    StatusUpdateComponent.objects.bulk_create(
        StatusUpdateComponent(status_update=update, component=component, new_status=status)
        for component, status in affected
    )


def _require_open(incident: Incident) -> None:
    if incident.status == Status.CANCELLED:
        raise InvalidInput(
            {"incident": f"{incident.number} is cancelled: it has nothing to tell customers."}
        )


def _require_title(update: StatusUpdate, action: str) -> None:
    if update.public_title == TITLE_PROMPT:
        raise InvalidInput(
            {"public_title": f"Write a customer-facing title before you {action} this update."}
        )


def _record(update: StatusUpdate, *, actor: Any, source: str, message: str, **data: Any) -> None:
    timeline_record(
        incident=update.incident,
        kind=Kind.COMMUNICATION,
        source=source,
        actor=actor,
        message=message,
        data={"status_update": update.pk, "state": update.state, **data},
    )


def _locked(update: StatusUpdate) -> StatusUpdate:
    return (
        StatusUpdate.objects.select_for_update(of=("self",))
        .select_related("incident")
        .get(pk=update.pk)
    )


# --- the workflow -------------------------------------------------------------------------------


@transaction.atomic
def status_update_create(
    *,
    incident: Incident,
    actor: Any,
    source: str,
    public_status: str,
    body: str,
    public_title: str | None = None,
    components: Any = None,
    kind: str = UpdateKind.UPDATE,
) -> StatusUpdate:
    """Draft an update of ``incident``. Needs ``communications.add_statusupdate``; the incident
    may not be cancelled. Without ``public_title`` the title is :data:`TITLE_PROMPT`. The body
    (Markdown) is stored with its sanitized HTML. ``components``: see
    :func:`resolve_components`. Timeline entry and history record. Not idempotent: each call
    drafts one more update."""
    require(actor, "communications.add_statusupdate", "draft status updates")
    incident = Incident.objects.get(pk=incident.pk)
    _require_open(incident)
    if kind not in UpdateKind.values:
        raise InvalidInput({"kind": f"One of {', '.join(UpdateKind.values)}."})
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name, check, value in (
        ("public_title", _title, public_title),
        ("public_status", _public_status, public_status),
        ("body", _body, body),
        ("components", resolve_components, components),
    ):
        try:
            values[name] = check(value)
        except InvalidInput as exc:
            errors.update(exc.errors)
    if errors:
        raise InvalidInput(errors)
    update = StatusUpdate(
        incident=incident,
        kind=kind,
        state=UpdateState.DRAFT,
        public_title=values["public_title"],
        public_status=values["public_status"],
        body=values["body"],
        body_html=markdown_to_html(values["body"]),
        created_by=actor,
    )
    audited_save(update, actor=actor, reason=f"drafted ({source})")
    _write_affected(update, values["components"])
    label = "Restoration notice" if kind == UpdateKind.RESTORATION else "Status update"
    _record(
        update,
        actor=actor,
        source=source,
        message=f"{label} drafted: {update.public_title} ({update.get_public_status_display()}).",
    )
    return update


@transaction.atomic
def status_update_edit(
    *, status_update: StatusUpdate, actor: Any, source: str, **changes: Any
) -> StatusUpdate:
    """Change a draft's ``public_title``, ``public_status``, ``body`` or ``components`` (the
    fields not given keep their values). Needs ``communications.change_statusupdate``. A
    published update is immutable (409). Editing an approved update withdraws its approval (it
    is a draft again). Idempotent: the same values change nothing."""
    require(actor, "communications.change_statusupdate", "edit status updates")
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise InvalidInput({name: "Cannot be edited." for name in unknown})
    update = _locked(status_update)
    if update.state == UpdateState.PUBLISHED:
        raise UpdateStateConflict(action="edit", state=update.state, allowed=[], message=IMMUTABLE)
    errors: dict[str, str] = {}
    new: dict[str, Any] = {}
    checks = {"public_title": _title, "public_status": _public_status, "body": _body}
    for name, check in checks.items():
        if name in changes:
            try:
                new[name] = check(changes[name])
            except InvalidInput as exc:
                errors.update(exc.errors)
    affected = None
    if "components" in changes:
        try:
            affected = resolve_components(changes["components"])
        except InvalidInput as exc:
            errors.update(exc.errors)
    if errors:
        raise InvalidInput(errors)
    changed = [name for name, value in new.items() if getattr(update, name) != value]
    if affected is not None and _affected_set(affected) != _affected_set(_affected_now(update)):
        changed.append("components")
    if not changed:
        return update
    for name in changed:
        if name in new:
            setattr(update, name, new[name])
    update.body_html = markdown_to_html(update.body)
    withdrawn = update.state == UpdateState.APPROVED
    if withdrawn:
        update.state = UpdateState.DRAFT
        update.approved_by = None
        update.approved_at = None
    audited_save(update, actor=actor, reason=f"edited ({source}): {', '.join(changed)}")
    if "components" in changed:
        _write_affected(update, affected)
    message = f"Status update edited ({', '.join(changed)}): {update.public_title}."
    if withdrawn:
        message += " Its approval is withdrawn: it needs approving again."
    _record(update, actor=actor, source=source, message=message, fields=changed)
    return update


def needs_approval(update: StatusUpdate) -> bool:
    """Whether the policy asks the business liaison to approve updates of this incident's
    severity before they are published."""
    return update.incident.severity_id in communication_policy_get().approval_severities


@transaction.atomic
def status_update_approve(*, status_update: StatusUpdate, actor: Any, source: str) -> StatusUpdate:
    """Approve a draft for publication. Needs ``communications.approve_statusupdate`` (the
    business liaison), and the approver may not be its author (403). Only a draft with a
    customer-facing title; a published one is a 409. Idempotent: approving an approved update
    changes nothing."""
    require(
        actor,
        "communications.approve_statusupdate",
        "approve status updates (the business liaison approves)",
    )
    update = _locked(status_update)
    if update.state == UpdateState.APPROVED:
        return update
    if update.state == UpdateState.PUBLISHED:
        raise UpdateStateConflict(
            action="approve",
            state=update.state,
            allowed=[],
            message="This update is already published; there is nothing to approve.",
        )
    if actor is not None and update.created_by_id == actor.pk:
        raise CommsForbidden(
            action="approve",
            message="You cannot approve your own draft: another business liaison must approve it.",
        )
    _require_title(update, "approve")
    update.state = UpdateState.APPROVED
    update.approved_by = actor
    update.approved_at = timezone.now()
    audited_save(update, actor=actor, reason=f"approved ({source})")
    _record(
        update,
        actor=actor,
        source=source,
        message=f"Status update approved: {update.public_title}.",
    )
    return update


@transaction.atomic
def status_update_publish(*, status_update: StatusUpdate, actor: Any, source: str) -> StatusUpdate:
    """Publish an update on the status page. Needs ``communications.publish_statusupdate``; a
    customer-facing title; an incident that is not cancelled; and, when the policy asks it for
    the incident's severity, the business liaison's approval (409 otherwise). Sets each affected
    component's status (recording its previous one), marks the public site stale and meets the
    incident's first-update clock (the 30-minute rule). Idempotent: publishing a published
    update changes nothing."""
    require(actor, "communications.publish_statusupdate", "publish status updates")
    update = _locked(status_update)
    if update.state == UpdateState.PUBLISHED:
        return update
    incident = Incident.objects.select_for_update().get(pk=update.incident_id)
    _require_open(incident)
    _require_title(update, "publish")
    if update.state != UpdateState.APPROVED and needs_approval(update):
        raise UpdateStateConflict(
            action="publish",
            state=update.state,
            allowed=["approve"],
            message=f"Sev {incident.severity_id} updates need the business liaison's approval "
            "before they are published.",
        )
    now = timezone.now()
    for row in update.affected.select_related("component__service").order_by("pk"):
        _, previous = component_status_set(
            component=row.component,
            status=row.new_status,
            actor=actor,
            reason=f"{incident.number}: {update.public_title}",
            status_update=update,
            at=now,
        )
        row.old_status = previous
        row.save(update_fields=["old_status"])
    update.state = UpdateState.PUBLISHED
    update.published_by = actor
    update.published_at = now
    audited_save(update, actor=actor, reason=f"published ({source})")
    _record(
        update,
        actor=actor,
        source=source,
        message=f"Status update published: {update.public_title} "
        f"({update.get_public_status_display()}).",
    )
    public_changed()
    # The 30-minute rule: the first published update meets the incident's clock.
    first_update_published(incident=incident, at=now)
    # Subscribers and affected customers get it by email or webhook, after commit.
    fanout_for_status_update(status_update=update)
    social_post_draft(status_update=update)
    return update
