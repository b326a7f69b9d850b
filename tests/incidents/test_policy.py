"""The procedure's tables (§2.1, §2.2, §3.1, §5.1) are in the database after ``migrate``, value
for value; policy rows are audited and validated."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError

from incidents.models import (
    Channel,
    Contact,
    EscalationContact,
    PriorityMatrixCell,
    ResponseRole,
    SeverityLevel,
)

pytestmark = pytest.mark.django_db

SEVERITIES = {
    1: {
        "name": "Critical",
        "definition": "Complete system outage or critical functionality unavailable",
        "business_impact": "High - Major business disruption",
        "examples": [
            "Website completely down",
            "Payment processing unavailable",
            "Data breach confirmed",
            "Critical security vulnerability",
        ],
        "response_target": timedelta(minutes=15),
        "resolution_target": timedelta(hours=4),
        "notification_channels": ["phone", "slack", "email"],
    },
    2: {
        "name": "High",
        "definition": "Significant performance degradation or important features unavailable",
        "business_impact": "Medium - Moderate business disruption",
        "examples": [
            "Slow response times affecting users",
            "Non-critical features unavailable",
            "Database performance issues",
            "Authentication system problems",
        ],
        "response_target": timedelta(hours=1),
        "resolution_target": timedelta(hours=8),
        "notification_channels": ["slack", "email"],
    },
    3: {
        "name": "Medium",
        "definition": "Minor performance issues or non-essential features affected",
        "business_impact": "Low - Minor business disruption",
        "examples": [
            "Cosmetic UI issues",
            "Non-critical reporting problems",
            "Minor performance degradation",
            "Single user access issues",
        ],
        "response_target": timedelta(hours=4),
        "resolution_target": timedelta(hours=24),
        "notification_channels": ["email", "slack"],
    },
    4: {
        "name": "Low",
        "definition": "Minimal impact issues or enhancement requests",
        "business_impact": "Minimal - No immediate business impact",
        "examples": [
            "Documentation updates",
            "Feature enhancement requests",
            "Minor UI improvements",
            "Non-urgent system optimizations",
        ],
        "response_target": timedelta(hours=24),
        "resolution_target": timedelta(hours=72),
        "notification_channels": ["email"],
    },
}

# §2.2, read row by row: (urgency, impact) -> priority.
PRIORITY_MATRIX = {
    ("high", "high"): 1,
    ("high", "medium"): 2,
    ("high", "low"): 3,
    ("medium", "high"): 2,
    ("medium", "medium"): 3,
    ("medium", "low"): 4,
    ("low", "high"): 3,
    ("low", "medium"): 4,
    ("low", "low"): 4,
}

ROLES = [
    (
        "incident_manager",
        "Incident Manager",
        [
            "Coordinate incident response activities",
            "Manage stakeholder communications",
            "Ensure proper escalation procedures",
            "Document incident details and resolution",
        ],
    ),
    (
        "technical_lead",
        "Technical Lead",
        [
            "Lead technical investigation",
            "Coordinate with development teams",
            "Implement technical solutions",
            "Validate fixes and resolutions",
        ],
    ),
    (
        "communications_lead",
        "Communications Lead",
        [
            "Manage external communications",
            "Update status pages",
            "Coordinate with customer support",
            "Prepare incident reports",
        ],
    ),
    (
        "business_liaison",
        "Business Liaison",
        [
            "Assess business impact",
            "Coordinate with business stakeholders",
            "Provide business context for decisions",
            "Approve communication content",
        ],
    ),
]

ACTIONS = ["acknowledge", "investigate", "mitigate", "monitor", "resolve", "reopen"]
GROUP_ACTIONS = {
    "Incident Manager": {*ACTIONS, "close", "cancel"},
    "Technical Lead": set(ACTIONS),
    "Communications Lead": {"acknowledge"},
    "Business Liaison": set(),
    "Viewer": set(),
}


def codenames(group_name: str) -> set[str]:
    return set(Group.objects.get(name=group_name).permissions.values_list("codename", flat=True))


# --- the seeded tables ---------------------------------------------------------------------------


def test_exactly_four_severity_levels():
    assert list(SeverityLevel.objects.values_list("level", flat=True)) == [1, 2, 3, 4]


@pytest.mark.parametrize("level", sorted(SEVERITIES))
def test_severity_level_is_the_procedures_value_for_value(level):
    expected = SEVERITIES[level]
    row = SeverityLevel.objects.get(level=level)
    assert row.name == expected["name"]
    assert row.definition == expected["definition"]
    assert row.business_impact == expected["business_impact"]
    assert row.example_list == expected["examples"]
    assert row.response_target == expected["response_target"]
    assert row.resolution_target == expected["resolution_target"]
    assert row.notification_channels == expected["notification_channels"]
    row.full_clean()


def test_priority_matrix_is_the_full_three_by_three_table():
    cells = {
        (cell.urgency, cell.impact): cell.priority for cell in PriorityMatrixCell.objects.all()
    }
    assert cells == PRIORITY_MATRIX


@pytest.mark.parametrize(
    ("position", "key", "name", "responsibilities"),
    [(position, *role) for position, role in enumerate(ROLES, start=1)],
)
def test_response_role_with_responsibilities_and_contacts(position, key, name, responsibilities):
    role = ResponseRole.objects.select_related("primary_contact", "backup_contact", "group").get(
        key=key
    )
    assert role.name == name
    assert role.position == position
    assert role.responsibility_list == responsibilities
    assert role.primary_contact is not None
    assert role.backup_contact is not None
    assert role.primary_contact != role.backup_contact
    for contact in (role.primary_contact, role.backup_contact):
        contact.full_clean()
        assert contact.email
    assert role.group.name == name


def test_response_roles_in_procedure_order():
    assert [r.key for r in ResponseRole.objects.all()] == [key for key, _, _ in ROLES]


def test_escalation_levels_in_order_with_contacts():
    levels = list(EscalationContact.objects.select_related("contact"))
    assert [(e.key, e.name) for e in levels] == [
        ("it_manager", "IT Manager"),
        ("cto", "CTO"),
        ("ceo", "CEO"),
        ("board", "Board"),
        # Not a matrix level: notified by the "security team alert" rule action (§7.2).
        ("security_team", "Security team"),
    ]
    assert all(e.contact is not None for e in levels)


def test_role_groups_and_viewer_exist():
    assert set(GROUP_ACTIONS) <= set(Group.objects.values_list("name", flat=True))


@pytest.mark.parametrize("group_name", sorted(GROUP_ACTIONS))
def test_group_lifecycle_permissions(group_name):
    lifecycle = {f"{action}_incident" for action in [*ACTIONS, "close", "cancel"]}
    granted = codenames(group_name) & lifecycle
    assert granted == {f"{action}_incident" for action in GROUP_ACTIONS[group_name]}


@pytest.mark.parametrize("group_name", sorted(GROUP_ACTIONS))
def test_every_group_can_see_incidents_and_policy(group_name):
    assert {
        "view_incident",
        "view_timelineentry",
        "view_severitylevel",
        "view_prioritymatrixcell",
        "view_responserole",
    } <= codenames(group_name)


def test_viewer_is_read_only():
    perms = codenames("Viewer")
    assert perms
    assert all(codename.startswith("view_") for codename in perms)


def test_responders_write_and_only_managers_assign_roles():
    for name in ("Incident Manager", "Technical Lead"):
        assert {"add_incident", "change_incident", "add_timelineentry"} <= codenames(name)
        assert "change_incident_severity" in codenames(name)
    assert "assign_incident_roles" in codenames("Incident Manager")
    for name in ("Technical Lead", "Communications Lead", "Business Liaison", "Viewer"):
        assert "assign_incident_roles" not in codenames(name)
    for name in ("Communications Lead", "Business Liaison"):
        assert "add_incident" not in codenames(name)
        assert "change_incident_severity" not in codenames(name)
        assert "add_timelineentry" in codenames(name)
    # Nobody but a superuser edits the policy tables themselves.
    for name in GROUP_ACTIONS:
        assert not codenames(name) & {"change_severitylevel", "change_prioritymatrixcell"}


# --- audit ---------------------------------------------------------------------------------------


def test_editing_a_severity_level_is_audited_with_its_user(make_user):
    editor = make_user(username="policy-editor", is_superuser=True)
    reviewer = make_user(username="policy-reviewer", is_superuser=True)
    row = SeverityLevel.objects.get(level=1)
    before = row.history.count()

    row.response_target = timedelta(minutes=10)
    row._history_user = editor
    row._change_reason = "tighter Sev 1 response"
    row.save()
    row = SeverityLevel.objects.get(level=1)
    row.notification_channels = ["phone", "sms", "slack", "email"]
    row._history_user = reviewer
    row._change_reason = "add SMS"
    row.save()

    assert row.history.count() == before + 2
    second, first = row.history.all()[:2]
    assert (first.history_type, first.history_user, first.history_change_reason) == (
        "~",
        editor,
        "tighter Sev 1 response",
    )
    assert first.response_target == timedelta(minutes=10)
    assert (second.history_user, second.history_change_reason) == (reviewer, "add SMS")
    delta = second.diff_against(first)
    assert delta.changed_fields == ["notification_channels"]
    assert delta.changes[0].new == ["phone", "sms", "slack", "email"]


@pytest.mark.parametrize(
    "model",
    [SeverityLevel, PriorityMatrixCell, ResponseRole, Contact, EscalationContact],
    ids=lambda m: m.__name__,
)
def test_every_policy_table_is_history_tracked(model, make_user):
    editor = make_user(username="auditor", is_superuser=True)
    row = model.objects.first()
    row._history_user = editor
    row.save()
    assert row.history.latest().history_user == editor


def test_priority_matrix_edit_is_audited(make_user):
    editor = make_user(username="matrix-editor", is_superuser=True)
    cell = PriorityMatrixCell.objects.get(urgency="low", impact="high")
    cell.priority = 2
    cell._history_user = editor
    cell.save()
    record = cell.history.latest()
    assert (record.priority, record.history_user) == (2, editor)


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "channels",
    [
        ["pager"],
        ["email", "carrier-pigeon"],
        ["email", "email"],
        [],
        "email",
        {"email": True},
        None,
    ],
    ids=["unknown", "one-unknown", "duplicate", "empty", "string", "dict", "none"],
)
def test_invalid_channels_are_rejected(channels):
    row = SeverityLevel.objects.get(level=2)
    row.notification_channels = channels
    with pytest.raises(ValidationError) as info:
        row.full_clean()
    assert "notification_channels" in info.value.message_dict


def test_every_known_channel_is_accepted():
    row = SeverityLevel.objects.get(level=4)
    row.notification_channels = list(Channel.values)
    row.full_clean()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("response_target", timedelta(0)),
        ("response_target", timedelta(minutes=-5)),
        ("resolution_target", timedelta(0)),
        ("resolution_target", timedelta(minutes=10)),  # shorter than the 15-minute response
    ],
)
def test_invalid_targets_are_rejected(field, value):
    row = SeverityLevel.objects.get(level=1)
    setattr(row, field, value)
    with pytest.raises(ValidationError) as info:
        row.full_clean()
    assert field in info.value.message_dict


@pytest.mark.parametrize("level", [0, 5])
def test_severity_level_outside_one_to_four_is_rejected(level):
    row = SeverityLevel.objects.get(level=4)
    row.level = level
    with pytest.raises(ValidationError) as info:
        row.full_clean()
    assert "level" in info.value.message_dict


@pytest.mark.parametrize("priority", [0, 5])
def test_priority_outside_one_to_four_is_rejected(priority):
    cell = PriorityMatrixCell.objects.get(urgency="high", impact="high")
    cell.priority = priority
    with pytest.raises(ValidationError):
        cell.full_clean()


def test_second_cell_for_the_same_urgency_and_impact_is_rejected():
    with pytest.raises(ValidationError):
        PriorityMatrixCell(urgency="high", impact="high", priority=2).full_clean()


def test_contact_needs_a_way_to_reach_them():
    with pytest.raises(ValidationError):
        Contact(name="Nobody").full_clean()
    Contact(name="Somebody", slack_handle="@somebody").full_clean()
