"""``manage.py reviews_demo``: the post-incident review of the closed demo incident (booked,
held, written, two action items, published with its knowledge-base article) on top of
``demo_data``'s incidents. Idempotent."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from incidents.management import demo as incident_demo

from ...management import demo


class Command(BaseCommand):
    help = (
        "Load the reviews demo on top of demo_data's incidents: the closed demo incident's "
        "post-incident review booked at its closure (invitations in the outbox), held, written "
        "to the §8.2 agenda, with one action item done and one overdue, and published. "
        "Idempotent (loaded once). Refuses the databases demo_data refuses; --force and "
        "--keep-existing as there."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="Load even into a database demo_data's guard refuses.",
        )
        parser.add_argument(
            "--keep-existing",
            action="store_true",
            help=(
                "In a development database (DJANGO_DEBUG on, the embedded SQLite) used since "
                "the demo was loaded (users the demo did not make, changed demo passwords), "
                "load nothing and succeed, as demo_data does (`make run` passes this). Other "
                "refusals stand."
            ),
        )

    def handle(self, *args, **options) -> None:
        force = options["force"]
        if options["keep_existing"] and not force:
            place = incident_demo.place_refusals(debug=settings.DEBUG)
            users = incident_demo.user_refusals()
            if users and not place:
                self.stdout.write(
                    self.style.WARNING(
                        "Reviews demo not loaded: this development database has been used "
                        "since (" + "; ".join(users) + "), and is kept as it is."
                    )
                )
                return
        refusals = incident_demo.load_refusals(debug=settings.DEBUG)
        if refusals and not force:
            raise CommandError(
                "Refusing to load the reviews demo: this is not a throwaway database: "
                + "; ".join(refusals)
                + ". Nothing was changed. For a fresh development database: `make reset`, then "
                "`make run`; on a throwaway installation: --force."
            )
        if refusals:
            self.stdout.write(
                self.style.WARNING("Loading anyway (--force): " + "; ".join(refusals) + ".")
            )
        try:
            result = demo.load()
        except RuntimeError as exc:
            raise CommandError(
                f"The reviews demo needs what demo_data loads: missing {exc}. Run "
                "`manage.py demo_data` first. Nothing was changed."
            ) from exc
        if not result.loaded:
            self.stdout.write("Reviews demo already there.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Reviews demo ready: the review of {result.review.incident.number} published "
                f"with {result.actions} action items."
            )
        )
