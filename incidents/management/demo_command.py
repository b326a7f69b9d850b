"""The command shape of the demos that load on top of ``demo_data`` (``status_demo``,
``reviews_demo``): the same ``--force`` and ``--keep-existing`` and the same refusals as
``demo_data``, then the demo's own ``load()``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from . import demo as incident_demo


class LayeredDemoCommand(BaseCommand):
    """Subclasses name the demo (``demo_name``, e.g. "status page demo") and implement
    :meth:`load` (returning what :meth:`report` prints); a RuntimeError from ``load`` names
    what ``demo_data`` should have loaded."""

    demo_name = "demo"

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

    def load(self) -> Any:
        raise NotImplementedError

    def report(self, result: Any) -> None:
        raise NotImplementedError

    def handle(self, *args, **options) -> None:
        force = options["force"]
        name = self.demo_name
        if options["keep_existing"] and not force:
            place = incident_demo.place_refusals(debug=settings.DEBUG)
            users = incident_demo.user_refusals()
            if users and not place:
                self.stdout.write(
                    self.style.WARNING(
                        f"{name[:1].upper()}{name[1:]} not loaded: this development database "
                        "has been used since (" + "; ".join(users) + "), and is kept as it is."
                    )
                )
                return
        refusals = incident_demo.load_refusals(debug=settings.DEBUG)
        if refusals and not force:
            raise CommandError(
                f"Refusing to load the {name}: this is not a throwaway database: "
                + "; ".join(refusals)
                + ". Nothing was changed. For a fresh development database: `make reset`, then "
                "`make run`; on a throwaway installation: --force."
            )
        if refusals:
            self.stdout.write(
                self.style.WARNING("Loading anyway (--force): " + "; ".join(refusals) + ".")
            )
        try:
            result = self.load()
        except RuntimeError as exc:
            raise CommandError(
                f"The {name} needs what demo_data loads: missing {exc}. Run "
                "`manage.py demo_data` first. Nothing was changed."
            ) from exc
        self.report(result)
