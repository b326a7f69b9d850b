"""Deterministic factories. Incidents are made through ``incident_create`` (the only writer),
then walked to the wanted status through the lifecycle services."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from incidents.models import Incident, Service, Source
from incidents.services import incident_create, incident_transition, incident_update

# The shortest path of actions from open to each status.
PATH_TO = {
    "open": [],
    "acknowledged": ["acknowledge"],
    "investigating": ["acknowledge", "investigate"],
    "mitigating": ["acknowledge", "investigate", "mitigate"],
    "monitoring": ["acknowledge", "investigate", "mitigate", "monitor"],
    "resolved": ["acknowledge", "investigate", "resolve"],
    "closed": ["acknowledge", "investigate", "resolve", "close"],
    "cancelled": ["cancel"],
}


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    first_name = factory.LazyAttribute(lambda u: u.username.capitalize())
    is_staff = True
    password = factory.django.Password("vigil-test-pass")

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.add(*[Group.objects.get(name=name) for name in extracted])


class ServiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Service
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"service-{n}")
    name = factory.LazyAttribute(lambda s: s.slug.replace("-", " ").title())
    public_name = factory.LazyAttribute(lambda s: s.name)


class IncidentFactory(factory.Factory):
    """``IncidentFactory(status="resolved", severity=2)``: created and transitioned by Vigil
    itself (actor None, source system), so tests start from a realistic history."""

    class Meta:
        model = Incident

    title = factory.Sequence(lambda n: f"Incident {n}")
    severity = 3
    impact = "medium"
    urgency = "medium"
    summary = "Customers cannot check out."
    services = ()
    status = "open"

    @classmethod
    def _create(cls, model_class, *, status="open", **kwargs):
        incident = incident_create(actor=None, source=Source.SYSTEM, **kwargs)
        for action in PATH_TO[status]:
            if action == "resolve":
                incident = incident_transition(
                    incident=incident,
                    action=action,
                    actor=None,
                    source=Source.SYSTEM,
                    resolution=incident.resolution or "Rolled back the release.",
                )
            elif action == "close":
                incident = incident_update(
                    incident=incident,
                    actor=None,
                    source=Source.SYSTEM,
                    root_cause=incident.root_cause or "A bad release.",
                    business_impact=incident.business_impact or "Checkout down 20 minutes.",
                )
                incident = incident_transition(
                    incident=incident, action=action, actor=None, source=Source.SYSTEM
                )
            elif action == "cancel":
                incident = incident_transition(
                    incident=incident,
                    action=action,
                    actor=None,
                    source=Source.SYSTEM,
                    reason="False alarm.",
                )
            else:
                incident = incident_transition(
                    incident=incident, action=action, actor=None, source=Source.SYSTEM
                )
        return incident

    @classmethod
    def _build(cls, model_class, *args, **kwargs):
        raise NotImplementedError("Incidents are only made through incident_create.")
