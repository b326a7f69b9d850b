from django.apps import AppConfig


class KpisConfig(AppConfig):
    """Measuring the procedure (§8.3, §9): KPIs against targets, monthly rollups and reports,
    the customer satisfaction survey and the Prometheus exposition.

    An app of its own rather than part of ``reviews``: it reads ``reviews`` (root causes, action
    items) *and* ``communications`` (the customer contacts it surveys), two apps that stay
    independent of each other, so it sits one layer above both.
    """

    name = "kpis"
    verbose_name = "KPIs and reports"

    def ready(self) -> None:
        from . import handlers

        # Subscribing again replaces the callbacks: ready() may run twice (tests, reloads).
        handlers.subscribe()
