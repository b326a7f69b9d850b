"""``manage.py demo_data``: load the demo services, staff, contacts and incidents (idempotent)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from incidents.management import demo


class Command(BaseCommand):
    help = (
        "Load demo data: services, staff in every role group, contacts on the response roles "
        "and incidents in several states, all played through the incident services. "
        "Idempotent; resets the demo logins' password. Refuses to run with DEBUG off."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run even with DJANGO_DEBUG off (creates logins with a published password).",
        )

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "Refusing to load demo data with DJANGO_DEBUG off: it creates logins with a "
                "published password. Use DJANGO_DEBUG=1 (as `make run` does), or --force on a "
                "throwaway installation."
            )
        result = demo.load()
        out = self.stdout
        if not result.replayed_in_time:
            out.write(
                self.style.WARNING(
                    "time-machine is not installed: demo incidents are back-dated, but their "
                    "steps are stamped with the current time."
                )
            )
        out.write(self.style.MIGRATE_HEADING("Demo incidents:"))
        for incident, created in result.incidents:
            state = "created" if created else "already there"
            out.write(
                f"  {incident.number}  Sev {incident.severity_id}  {incident.status:<13} "
                f"{incident.title}  ({state})"
            )
        out.write(self.style.MIGRATE_HEADING(f"Demo logins (password: {demo.DEMO_PASSWORD}):"))
        out.write(f"  {demo.SUPERUSER:<8} Demo Admin        superuser")
        for person, _created in result.users:
            detail = person.group
            if person.role:
                detail += " (backup contact)" if person.backup else " (primary contact)"
            if person.escalation:
                detail += f", escalation contact: {person.escalation.replace('_', ' ')}"
            out.write(f"  {person.username:<8} {person.full_name:<17} {detail}")
        out.write(
            self.style.SUCCESS(
                f"Demo data ready at {timezone.localtime():%Y-%m-%d %H:%M %Z}. "
                f"Log in as {demo.SUPERUSER} / {demo.DEMO_PASSWORD}."
            )
        )
