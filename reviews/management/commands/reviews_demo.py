"""``manage.py reviews_demo``: the post-incident review of the closed demo incident (booked,
held, written, two action items, published with its knowledge-base article) on top of
``demo_data``'s incidents. Idempotent."""

from __future__ import annotations

from incidents.management.demo_command import LayeredDemoCommand

from ...management import demo


class Command(LayeredDemoCommand):
    help = (
        "Load the reviews demo on top of demo_data's incidents: the closed demo incident's "
        "post-incident review booked at its closure (invitations in the outbox), held, written "
        "to the §8.2 agenda, with one action item done and one overdue, and published. "
        "Idempotent (loaded once). Refuses the databases demo_data refuses; --force and "
        "--keep-existing as there."
    )

    demo_name = "reviews demo"

    def load(self):
        return demo.load()

    def report(self, result) -> None:
        if not result.loaded:
            self.stdout.write("Reviews demo already there.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Reviews demo ready: the review of {result.review.incident.number} published "
                f"with {result.actions} action items."
            )
        )
