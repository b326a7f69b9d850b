from django.apps import AppConfig


class EscalationConfig(AppConfig):
    name = "escalation"
    verbose_name = "Escalation and notifications"

    def ready(self) -> None:
        from incidents.signals import incident_event_in_transaction

        from . import receivers

        # A dispatch_uid keeps the receiver single even if ready() runs twice (tests, reloads).
        incident_event_in_transaction.connect(
            receivers.on_incident_event, dispatch_uid="escalation.on_incident_event"
        )
