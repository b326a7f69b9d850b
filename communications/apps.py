from django.apps import AppConfig


class CommunicationsConfig(AppConfig):
    name = "communications"
    verbose_name = "Public communication"

    def ready(self) -> None:
        from . import handlers

        # Subscribing again replaces the callbacks: ready() may run twice (tests, reloads).
        handlers.subscribe()
