"""``manage.py demo_data``: load the demo services, staff, contacts, integrations and incidents
(idempotent)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from incidents.management import demo


class Command(BaseCommand):
    help = (
        "Load demo data: services, staff in every role group, contacts on the response roles, "
        "monitoring integrations and incidents in several states, all made through the "
        "services. "
        "Idempotent. The demo logins have a published password, so it refuses any database "
        "but a throwaway one: DJANGO_DEBUG off, a database other than the embedded SQLite "
        "under VIGIL_VAR_DIR, users other than the demo's, or demo-named users whose password "
        "is not the demo password. --force loads anyway and resets the demo logins' passwords."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help=(
                "Load even into a database the guard refuses, and reset the password of every "
                "demo-named user (admin included) to the published demo password."
            ),
        )

        parser.add_argument(
            "--keep-existing",
            action="store_true",
            help=(
                "In a development database (DJANGO_DEBUG on, the embedded SQLite) that has "
                "users the demo did not make, or demo logins whose password was changed, load "
                "nothing and succeed: the database has been used since the demo was loaded, "
                "and is kept as it is (`make run` passes this). Other refusals stand."
            ),
        )

    def handle(self, *args, **options) -> None:
        if options["keep_existing"] and not options["force"]:
            place = demo.place_refusals(debug=settings.DEBUG)
            users = demo.user_refusals()
            if users and not place:
                self.stdout.write(
                    self.style.WARNING(
                        "Demo data not loaded: this development database has been used since "
                        "(" + "; ".join(users) + "), and is kept as it is. "
                        "`make reset` starts afresh."
                    )
                )
                return
        refusals = demo.load_refusals(debug=settings.DEBUG)
        if refusals and not options["force"]:
            raise CommandError(
                f"Refusing to load demo data: it creates logins with the published password "
                f"{demo.DEMO_PASSWORD!r}, and this is not a throwaway database: "
                + "; ".join(refusals)
                + ". Nothing was changed. For a fresh development database: `make reset`, then "
                "`make run`. On a throwaway installation: --force (`make run DEMO_ARGS=--force`), "
                "which also resets the demo-named users' passwords to the demo password."
            )
        if refusals:
            self.stdout.write(
                self.style.WARNING("Loading anyway (--force): " + "; ".join(refusals) + ".")
            )
        result = demo.load(reset_passwords=options["force"])
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
        detection = result.integrations
        if detection is not None:
            out.write(self.style.MIGRATE_HEADING("Demo integrations (Admin → Integrations):"))
            for integration, created in detection.integrations:
                state = "created" if created else "already there"
                out.write(f"  {integration.name:<26} {integration.get_kind_display()}  ({state})")
            for line in detection.notes:
                out.write(f"  {line}")
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
