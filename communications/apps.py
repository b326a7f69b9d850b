from django.apps import AppConfig


class CommunicationsConfig(AppConfig):
    name = "communications"
    verbose_name = "Public communication"

    def ready(self) -> None:
        from . import handlers

        # Subscribing again replaces the callbacks: ready() may run twice (tests, reloads).
        handlers.subscribe()

        from . import dashboard

        # The admin index's "What needs you now" (registering again replaces).
        dashboard.register()
        from anymail.signals import tracking

        from .services.tracking import tracking_receive

        tracking.connect(tracking_receive, dispatch_uid="communications.email_tracking")
