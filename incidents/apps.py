from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    name = "incidents"
    verbose_name = "Incidents"

    def ready(self) -> None:
        from . import checks, receivers  # noqa: F401
        from .memo import tokens_scopes_connect

        tokens_scopes_connect()
