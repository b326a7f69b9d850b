"""API lists of an incident's notifications and escalation events."""

from rest_framework.generics import ListAPIView


class IncidentNotificationList(ListAPIView):
    pass


class IncidentEscalationList(ListAPIView):
    pass
