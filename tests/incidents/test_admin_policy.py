"""Policy pages (validated, audited by simple-history, readable) and the read-only records."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from incidents.models import (
    PriorityMatrixCell,
    RoleAssignment,
    Service,
    SeverityLevel,
    SlaBreach,
    Source,
    TimelineEntry,
)
from incidents.services import incident_role_assign

pytestmark = pytest.mark.django_db


def severity_form(level: SeverityLevel, **overrides) -> dict[str, str]:
    data = {
        "name": level.name,
        "definition": level.definition,
        "business_impact": level.business_impact,
        "examples": level.examples,
        "response_target": "00:15:00",
        "resolution_target": "04:00:00",
        "notification_channels": ", ".join(level.notification_channels),
        "default_impact": level.default_impact,
        "default_urgency": level.default_urgency,
    }
    data.update(overrides)
    return data


def test_severity_list_reads_like_the_procedure(client, viewer):
    client.force_login(viewer)

    html = client.get(reverse("admin:incidents_severitylevel_changelist")).content.decode()

    for text in ("15 min", "1 h", "4 h", "8 h", "24 h", "72 h", "Phone call + Slack + Email"):
        assert text in html


def test_severity_edit_is_validated_and_audited(client, superuser):
    level = SeverityLevel.objects.get(level=1)
    url = reverse("admin:incidents_severitylevel_change", args=[level.pk])
    client.force_login(superuser)
    records_before = level.history.count()

    unknown = client.post(url, severity_form(level, notification_channels="phone, fax"))
    inverted = client.post(url, severity_form(level, response_target="05:00:00"))
    saved = client.post(url, severity_form(level, notification_channels="Slack, phone"))

    assert "Unknown channel(s): fax" in str(unknown.context["adminform"].form.errors)
    assert "cannot be shorter than the response target" in str(
        inverted.context["adminform"].form.errors
    )
    assert saved.status_code == 302
    level.refresh_from_db()
    assert level.notification_channels == ["slack", "phone"]
    record = level.history.first()
    assert (record.history_type, record.history_user) == ("~", superuser)
    assert level.history.count() == records_before + 1  # the refused edits left none


def test_severity_levels_cannot_be_added_or_deleted(client, superuser):
    client.force_login(superuser)
    level = SeverityLevel.objects.get(level=4)

    assert client.get(reverse("admin:incidents_severitylevel_add")).status_code == 403
    delete = reverse("admin:incidents_severitylevel_delete", args=[level.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403


def test_priority_matrix_lists_high_to_low_and_edits_are_audited(client, superuser):
    client.force_login(superuser)
    url = reverse("admin:incidents_prioritymatrixcell_changelist")

    response = client.get(url)
    cells = list(response.context["cl"].result_list)
    assert [(c.urgency, c.impact) for c in cells[:3]] == [
        ("high", "high"),
        ("high", "medium"),
        ("high", "low"),
    ]
    assert [c.urgency for c in cells[-3:]] == ["low", "low", "low"]

    formset = response.context["cl"].formset
    data = {
        "form-TOTAL_FORMS": str(len(cells)),
        "form-INITIAL_FORMS": str(len(cells)),
        "_save": "Save",
    }
    for index, cell in enumerate(cells):
        data[f"form-{index}-id"] = str(cell.pk)
        data[f"form-{index}-priority"] = "2" if index == 0 else str(cell.priority)
    assert formset is not None
    saved = client.post(url, data)

    assert saved.status_code == 302
    top = PriorityMatrixCell.objects.get(urgency="high", impact="high")
    assert top.priority == 2
    assert top.history.first().history_user == superuser


def test_contacts_and_roles_pages_render(client, incident_manager):
    client.force_login(incident_manager)

    for name in ("contact", "responserole", "escalationcontact", "service"):
        response = client.get(reverse(f"admin:incidents_{name}_changelist"))
        assert response.status_code == 200, name
    roles = client.get(reverse("admin:incidents_responserole_changelist")).content.decode()
    assert "Coordinate incident response activities" in roles


def test_services_are_added_here_and_never_deleted(client, incident_manager, superuser):
    client.force_login(incident_manager)

    added = client.post(
        reverse("admin:incidents_service_add"),
        {"slug": "billing", "name": "Billing", "kind": "production", "tier": "1"},
    )

    assert added.status_code == 302
    service = Service.objects.get(slug="billing")
    assert service.history.first().history_user == incident_manager
    client.force_login(superuser)
    delete = reverse("admin:incidents_service_delete", args=[service.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403


# --- records the services write ----------------------------------------------------------


def test_timeline_entries_are_read_only(client, superuser, make_incident):
    incident = make_incident()
    entry = TimelineEntry.objects.filter(incident=incident).first()
    client.force_login(superuser)

    listing = client.get(reverse("admin:incidents_timelineentry_changelist"))
    page = client.get(reverse("admin:incidents_timelineentry_change", args=[entry.pk]))
    posted = client.post(
        reverse("admin:incidents_timelineentry_change", args=[entry.pk]), {"message": "edited"}
    )

    assert listing.status_code == 200 and incident.number in listing.content.decode()
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert posted.status_code == 403
    assert client.get(reverse("admin:incidents_timelineentry_add")).status_code == 403
    delete = reverse("admin:incidents_timelineentry_delete", args=[entry.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    entry.refresh_from_db()
    assert entry.message != "edited"


def test_role_assignments_and_sla_breaches_are_read_only(
    client, superuser, technical_lead, make_incident
):
    from django.utils import timezone

    from incidents.services import sla_breaches_record

    incident = make_incident(severity=1, detected_at=timezone.now() - timedelta(hours=1))
    incident_role_assign(
        incident=incident,
        role="technical_lead",
        user=technical_lead,
        actor=None,
        source=Source.SYSTEM,
    )
    sla_breaches_record()
    assignment = RoleAssignment.objects.get(incident=incident)
    breach = SlaBreach.objects.get(incident=incident)
    client.force_login(superuser)

    for name, obj in (("roleassignment", assignment), ("slabreach", breach)):
        listing = client.get(reverse(f"admin:incidents_{name}_changelist"))
        assert listing.status_code == 200 and incident.number in listing.content.decode()
        assert client.get(reverse(f"admin:incidents_{name}_add")).status_code == 403
        page = client.get(reverse(f"admin:incidents_{name}_change", args=[obj.pk]))
        assert 'name="_save"' not in page.content.decode()


def test_id_sequences_are_shown_read_only(client, superuser, make_incident):
    incident = make_incident()
    client.force_login(superuser)

    listing = client.get(reverse("admin:incidents_incidentdaysequence_changelist"))

    assert [(row.day, row.last) for row in listing.context["cl"].result_list] == [
        (incident.day, incident.sequence)
    ]
    assert client.get(reverse("admin:incidents_incidentdaysequence_add")).status_code == 403
