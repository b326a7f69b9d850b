"""``manage.py kpis_demo``: six months of incident history for the KPI dashboard and the
monthly report, on top of ``demo_data`` (and ``status_demo``'s customers for the survey).
Idempotent."""

from __future__ import annotations

from incidents.management.demo_command import LayeredDemoCommand

from ...management import demo


class Command(LayeredDemoCommand):
    help = (
        "Load the KPI demo on top of demo_data: about 20-35 incidents a month over the last six "
        "whole months and the current one so far, each played through the services at its own "
        "moments (detection, acknowledgement, resolution, closure, review with its root-cause "
        "category and action items, survey ratings), with times improving over the months. "
        "Idempotent (loaded once). Refuses the databases demo_data refuses; --force and "
        "--keep-existing as there."
    )

    demo_name = "KPI demo"

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--months",
            type=int,
            default=demo.MONTHS,
            help=f"Whole months of history before the current one (default {demo.MONTHS}).",
        )

    def handle(self, *args, **options) -> None:
        self.months = max(0, options["months"])
        super().handle(*args, **options)

    def load(self):
        return demo.load(months=self.months)

    def report(self, result) -> None:
        if not result.loaded:
            self.stdout.write("KPI demo already there.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"KPI demo ready: {result.incidents} incidents over {result.months} months and "
                f"this one, {result.reviews} published reviews, {result.ratings} survey "
                f"ratings ({result.seconds:.0f} s)."
            )
        )
