from django.apps import AppConfig


class EscalationConfig(AppConfig):
    name = "escalation"
    verbose_name = "Escalation and notifications"

    def ready(self) -> None:
        from . import handlers

        # Subscribing again replaces the callbacks: ready() may run twice (tests, reloads).
        handlers.subscribe()

        from . import dashboard

        # The admin index's "What needs you now" (registering again replaces).
        dashboard.register()
