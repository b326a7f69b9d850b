"""``manage.py status_demo``: the status page's demo (components, 90 days of history, published
updates, maintenance) on top of ``demo_data``'s incidents. Idempotent."""

from __future__ import annotations

from incidents.management.demo_command import LayeredDemoCommand

from ...management import demo


class Command(LayeredDemoCommand):
    help = (
        "Load the status page demo on top of demo_data's incidents: the demo's customer-facing "
        "services as components, 90 days of status history with a few bad days and a past "
        "maintenance, the demo incidents' published updates and restoration notices, one "
        "component degraded now and a maintenance next week, all through the services. "
        "Idempotent (loaded once). Refuses the databases demo_data refuses; --force and "
        "--keep-existing as there."
    )

    demo_name = "status page demo"

    def load(self):
        return demo.load()

    def report(self, result) -> None:
        names = ", ".join(component.name for component in result.components)
        if not result.loaded:
            self.stdout.write(f"Status page demo already there ({names}).")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Status page demo ready: {len(result.components)} components ({names}), "
                f"90 days of history, {result.published} published updates, "
                f"{result.maintenances} maintenance windows, {result.customers} customers, "
                f"{result.subscribers} subscribers."
            )
        )
