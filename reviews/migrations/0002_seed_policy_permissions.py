"""The review policy's row (pk=1, the model's defaults: Sev 1-2 require a review within 5
business days, 90 minutes for Sev 1 and 60 otherwise, 09:00-17:00 UTC, no close guard, the
48-hour documentation rule), and the permissions of the role groups:

* the Incident Manager (who facilitates reviews, §8.1) books, reschedules, cancels, writes and
  publishes reviews, invites attendees, creates and updates action items, and keeps the review
  policy and the company closure days;
* every other role group (Technical Lead, Communications Lead, Business Liaison, Viewer) reads
  them: reviews, attendees, action items, the policy, closure days, the documentation clocks and
  the knowledge base.
"""

from django.db import migrations

VIEW = [
    "view_reviewpolicy",
    "view_closureday",
    "view_review",
    "view_reviewattendee",
    "view_actionitem",
    "view_documentationclock",
    "view_knowledgearticle",
    "view_runbooklink",
]
GROUP_PERMISSIONS = {
    "Incident Manager": [
        *VIEW,
        "add_review",
        "change_review",
        "book_review",
        "publish_review",
        "add_reviewattendee",
        "change_reviewattendee",
        "add_actionitem",
        "change_actionitem",
        "change_reviewpolicy",
        "add_closureday",
        "change_closureday",
        "delete_closureday",
    ],
    "Technical Lead": VIEW,
    "Communications Lead": VIEW,
    "Business Liaison": VIEW,
    "Viewer": VIEW,
}


def seed(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    app_config = apps.get_app_config("reviews")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    apps.get_model("reviews", "ReviewPolicy").objects.get_or_create(pk=1)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        perms = Permission.objects.filter(content_type__app_label="reviews", codename__in=codenames)
        missing = set(codenames) - set(perms.values_list("codename", flat=True))
        if missing:
            raise RuntimeError(f"Permissions missing for group {name}: {sorted(missing)}")
        group.permissions.add(*perms)


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0001_reviews"),
        ("incidents", "0002_seed_policy"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
