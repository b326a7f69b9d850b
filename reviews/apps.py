from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    name = "reviews"
    verbose_name = "Post-incident reviews"

    def ready(self) -> None:
        from . import handlers

        # Subscribing again replaces the callbacks: ready() may run twice (tests, reloads).
        handlers.subscribe()

        from . import dashboard

        # The admin index's "What needs you now" (registering again replaces).
        dashboard.register()
