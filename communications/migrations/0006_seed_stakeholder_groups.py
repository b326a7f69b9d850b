"""Seed §5.2's stakeholder table value for value, and the role groups' permissions on it.

| Stakeholder | Method | Frequency | Content |
| Executive Team | Email/Phone | Every 2 hours (Sev 1) | Status and ETA |
| Business Units | Email | Every 4 hours | Impact assessment |
| Customer Support | Slack | Every 30 minutes | Talking points |
| Partners | Email | As needed | Service impact |

How the rows are read (all editable in the admin, with history):

* "Email/Phone": every update is emailed and also sent as a text message to the members' phones
  (channel email, extra channel SMS); a member whose phone is a placeholder gets the email only.
* "Every 2 hours (Sev 1)": Sev 1 only. The Business units' and Customer support's rows name no
  severity; they are read as Sev 1-2 (the severities §5.2 also emails customers about): a Sev 3-4
  incident has no stakeholder schedule. "As needed": no interval, sent on demand.
* Members: the executive team is the §5.1 escalation contacts IT Manager, CTO and CEO (the seeded
  placeholder contacts; the Board is not on the table). The other rows get a placeholder address
  on their channel (``business-units@example.com``, ``#support``, ``partners@example.com``) to be
  replaced with the real distribution list or channel.

Permissions: every role reads the schedule; the communications lead and incident managers write
notes for a group and send an update on demand; the communications lead keeps the groups and
their members.
"""

from django.db import migrations

GROUPS = [
    {
        "name": "Executive team",
        "position": 1,
        "channel": "email",
        "extra_channels": ["sms"],
        "intervals": {"1": 120},
        "content": "status_eta",
    },
    {
        "name": "Business units",
        "position": 2,
        "channel": "email",
        "extra_channels": [],
        "intervals": {"1": 240, "2": 240},
        "content": "impact",
    },
    {
        "name": "Customer support",
        "position": 3,
        "channel": "slack",
        "extra_channels": [],
        "intervals": {"1": 30, "2": 30},
        "content": "talking_points",
    },
    {
        "name": "Partners",
        "position": 4,
        "channel": "email",
        "extra_channels": [],
        "intervals": {},
        "content": "service_impact",
    },
]
EXECUTIVE_ESCALATION_LEVELS = ["it_manager", "cto", "ceo"]
ADDRESSES = {
    "Business units": "business-units@example.com",
    "Customer support": "#support",
    "Partners": "partners@example.com",
}

VIEW = [
    "view_stakeholdergroup",
    "view_stakeholdermember",
    "view_stakeholdernote",
    "view_stakeholderschedule",
    "view_stakeholdersend",
]
WRITE = ["add_stakeholdernote", "add_stakeholdersend"]
KEEP_GROUPS = [
    "add_stakeholdergroup",
    "change_stakeholdergroup",
    "add_stakeholdermember",
    "change_stakeholdermember",
    "delete_stakeholdermember",
]
GROUP_PERMISSIONS = {
    "Incident Manager": VIEW + WRITE,
    "Technical Lead": VIEW,
    "Communications Lead": VIEW + WRITE + KEEP_GROUPS,
    "Business Liaison": VIEW,
    "Viewer": VIEW,
}


def seed(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    app_config = apps.get_app_config("communications")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    StakeholderGroup = apps.get_model("communications", "StakeholderGroup")
    StakeholderMember = apps.get_model("communications", "StakeholderMember")
    EscalationContact = apps.get_model("incidents", "EscalationContact")
    for values in GROUPS:
        group, created = StakeholderGroup.objects.get_or_create(
            name=values["name"], defaults=values
        )
        if not created or group.members.exists():
            continue
        if group.name == "Executive team":
            levels = EscalationContact.objects.filter(
                key__in=EXECUTIVE_ESCALATION_LEVELS, contact__isnull=False
            ).order_by("position")
            for level in levels:
                StakeholderMember.objects.create(group=group, contact_id=level.contact_id)
        elif group.name in ADDRESSES:
            StakeholderMember.objects.create(group=group, address=ADDRESSES[group.name])

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        perms = Permission.objects.filter(
            content_type__app_label="communications", codename__in=codenames
        )
        missing = set(codenames) - set(perms.values_list("codename", flat=True))
        if missing:
            raise RuntimeError(f"Permissions missing for group {name}: {sorted(missing)}")
        group.permissions.add(*perms)


class Migration(migrations.Migration):
    dependencies = [
        ("communications", "0005_messaging"),
        ("incidents", "0002_seed_policy"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
