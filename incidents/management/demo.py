"""Demo data: services, staff in every role group, contacts on the response roles, the
monitoring integrations (:mod:`.demo_integrations`), and a set of incidents whose whole history
is played through the incident services.

Idempotent: people, contacts and services are matched by their keys and saved only when they
differ; an incident story is played once (matched by its title) inside one transaction, so a
story is either all there or not at all.

The demo logins share a published password, so the demo belongs only in a throwaway database:
:func:`load_refusals` says why a database is not one (not the embedded SQLite under
``VIGIL_VAR_DIR``, users other than the demo's, or a demo-named user whose password is not the
demo's, such as a real ``admin``), and the command refuses to load unless forced. An existing
user's password is changed only when forced (``reset_passwords``).

When time-machine is installed (it is in the ``dev`` extra that ``make run`` installs), every
step of a story runs at its scripted moment, so IDs, timeline times, SLA clocks and history
read like a real week of incidents. Without it the steps happen now and only the detection and
impact-start times are back-dated.

A story that ends the incident (resolved, closed, cancelled) is history by the time the workers
start: it is logged with ``paging="none"``, so nobody is paged about it when its events are
followed (its escalation timers stop at its acknowledgement, as they would have).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password, make_password
from django.contrib.auth.models import Group
from django.db import connection, models, transaction
from django.utils import timezone

from incidents.management.demo_integrations import IntegrationsResult, load_integrations
from incidents.management.demo_stories import BL, CL, IM, STORIES, TL, Step, Story, ends
from incidents.models import (
    Contact,
    EscalationContact,
    Incident,
    Kind,
    ResponseRole,
    Service,
    ServiceKind,
    Tier,
)
from incidents.services import (
    incident_change_severity,
    incident_create,
    incident_note_add,
    incident_role_assign,
    incident_transition,
    incident_update,
    sla_breaches_record,
)

try:
    import time_machine
except ImportError:  # a production install without the dev extra
    time_machine = None

DEMO_PASSWORD = "vigil-demo"
SUPERUSER = "admin"
REASON = "demo data"


@dataclass(frozen=True)
class Person:
    username: str
    first_name: str
    last_name: str
    group: str
    phone: str
    # Response role this person is the primary or backup contact of, or escalation level key.
    role: str = ""
    backup: bool = False
    escalation: str = ""

    @property
    def email(self) -> str:
        return f"{self.username}@example.com"

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


PEOPLE = [
    Person("maria", "Maria", "Chen", "Incident Manager", "+14155550101", role=IM),
    Person("daniel", "Daniel", "Okafor", "Incident Manager", "+14155550102", IM, True),
    Person("priya", "Priya", "Raman", "Technical Lead", "+14155550103", role=TL),
    Person("tom", "Tom", "Becker", "Technical Lead", "+14155550104", TL, True),
    Person("lena", "Lena", "Fischer", "Communications Lead", "+14155550105", role=CL),
    Person("sam", "Sam", "Rivera", "Communications Lead", "+14155550106", CL, True),
    Person("omar", "Omar", "Haddad", "Business Liaison", "+14155550107", role=BL),
    Person("julia", "Julia", "Novak", "Business Liaison", "+14155550108", BL, True),
    Person("grace", "Grace", "Liu", "Viewer", "+14155550109", escalation="it_manager"),
    Person("robert", "Robert", "King", "Viewer", "+14155550110", escalation="cto"),
    Person("ana", "Ana", "Silva", "Viewer", "+14155550111", escalation="ceo"),
]
DEMO_USERNAMES = (SUPERUSER, *(person.username for person in PEOPLE))
# The Board is reached through its secretary's mailbox; nobody logs in as the Board.
BOARD_CONTACT = {"name": "Board of Directors", "email": "board@example.com", "phone": ""}

SERVICES = [
    {
        "slug": "web-app",
        "name": "Customer web app",
        "public_name": "Website",
        "description": "The storefront customers browse and buy from.",
        "kind": ServiceKind.CUSTOMER_APP,
        "tier": Tier.TIER_1,
        "customer_facing": True,
        "owner": "priya",
    },
    {
        "slug": "checkout",
        "name": "Payments and checkout",
        "public_name": "Checkout and payments",
        "description": "Cart, checkout and the card payment gateway integration.",
        "kind": ServiceKind.PRODUCTION,
        "tier": Tier.TIER_1,
        "customer_facing": True,
        "owner": "tom",
    },
    {
        "slug": "auth",
        "name": "Authentication (SSO)",
        "public_name": "Login",
        "description": "Customer and staff sign-in, sessions and the identity provider.",
        "kind": ServiceKind.PRODUCTION,
        "tier": Tier.TIER_1,
        "customer_facing": True,
        "owner": "priya",
    },
    {
        "slug": "orders-db",
        "name": "Orders database (PostgreSQL)",
        "public_name": "",
        "description": "Primary and replica PostgreSQL cluster behind orders and checkout.",
        "kind": ServiceKind.INFRASTRUCTURE,
        "tier": Tier.TIER_1,
        "customer_facing": False,
        "owner": "tom",
    },
    {
        "slug": "cdn",
        "name": "CDN (third-party)",
        "public_name": "Images and downloads",
        "description": "Third-party content delivery network for images and static assets.",
        "kind": ServiceKind.THIRD_PARTY,
        "tier": Tier.TIER_2,
        "customer_facing": True,
        "owner": "tom",
    },
    {
        "slug": "email-provider",
        "name": "Transactional email provider",
        "public_name": "Email notifications",
        "description": "Third-party provider sending order confirmations and password resets.",
        "kind": ServiceKind.THIRD_PARTY,
        "tier": Tier.TIER_2,
        "customer_facing": True,
        "owner": "priya",
    },
    {
        "slug": "reporting",
        "name": "Internal reporting (BI)",
        "public_name": "",
        "description": "Nightly sales and finance reports for the business units.",
        "kind": ServiceKind.INTERNAL,
        "tier": Tier.TIER_3,
        "customer_facing": False,
        "owner": "priya",
    },
]


@dataclass
class Result:
    users: list[tuple[Person, bool]] = field(default_factory=list)
    incidents: list[tuple[Incident, bool]] = field(default_factory=list)
    integrations: IntegrationsResult | None = None
    replayed_in_time: bool = False


def load_refusals(*, debug: bool) -> list[str]:
    """Why this database is not a throwaway one the demo may be loaded into (empty: it is).

    Reads only: the settings, the database's name and the users. A demo login is recognised by
    its password, the published one (checked once per distinct hash: the demo gives all its
    logins one hash), not by its name: a real ``admin`` is not the demo's.
    """
    return place_refusals(debug=debug) + user_refusals()


def place_refusals(*, debug: bool) -> list[str]:
    """Why this is not a development database at all (production mode, or not the embedded
    SQLite): the part of :func:`load_refusals` no flag but ``--force`` gets past."""
    reasons = []
    if not debug:
        reasons.append("DJANGO_DEBUG off (production mode)")
    if not _embedded_database():
        name = connection.settings_dict.get("NAME")
        reasons.append(
            f"the database ({connection.vendor} {name}) is not the embedded SQLite under "
            f"VIGIL_VAR_DIR ({settings.VAR_DIR})"
        )
    return reasons


def user_refusals() -> list[str]:
    """Users the demo did not make: the part of :func:`load_refusals` that, in a development
    database, means it has been used since the demo was loaded."""
    reasons = []
    User = get_user_model()
    others = list(
        User.objects.exclude(username__in=DEMO_USERNAMES)
        .order_by("username")
        .values_list("username", flat=True)[:6]
    )
    if others:
        listed = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        reasons.append(f"users that are not the demo's exist ({listed})")
    demo_named = User.objects.filter(username__in=DEMO_USERNAMES).values_list("username", flat=True)
    known = set(demo_logins())
    foreign = sorted(set(demo_named) - known)
    if foreign:
        reasons.append(
            "users with demo names exist whose password is not the demo password, so the demo "
            f"did not make them ({', '.join(foreign)})"
        )
    return reasons


def demo_logins() -> list[str]:
    """The usernames of the demo's logins that still have the published password (a few
    password checks: one per distinct hash of the demo's usernames, not one per user)."""
    User = get_user_model()
    verdicts: dict[str, bool] = {}
    found = []
    rows = User.objects.filter(username__in=DEMO_USERNAMES).values_list("username", "password")
    for username, encoded in rows:
        if encoded not in verdicts:
            verdicts[encoded] = bool(encoded) and check_password(DEMO_PASSWORD, encoded)
        if verdicts[encoded]:
            found.append(username)
    return sorted(found)


def _embedded_database() -> bool:
    """The embedded default: SQLite in a file under VIGIL_VAR_DIR (or in memory, which no
    installation can keep its data in)."""
    if connection.vendor != "sqlite":
        return False
    if connection.is_in_memory_db():
        return True
    name = Path(str(connection.settings_dict["NAME"])).resolve()
    return name.is_relative_to(Path(settings.VAR_DIR).resolve())


def load(*, now: datetime | None = None, reset_passwords: bool = False) -> Result:
    """Load the demo data (idempotent); see the module docstring. New demo logins get the demo
    password; existing users keep theirs unless ``reset_passwords``."""
    now = now or timezone.now()
    result = Result(replayed_in_time=time_machine is not None)
    # One hash for every demo login (hashing is deliberately slow).
    password = make_password(DEMO_PASSWORD)
    with transaction.atomic():
        admin = _superuser(password, reset=reset_passwords)
        users = {}
        for person in PEOPLE:
            users[person.username], created = _user(person, password, reset=reset_passwords)
            result.users.append((person, created))
        _contacts(users)
        _services(users)
    result.integrations = load_integrations(actor=admin, now=now)
    for story in STORIES:
        result.incidents.append(_play(story, users=users, now=now))
    sla_breaches_record()
    return result


def _save_if_changed(instance: models.Model, values: dict[str, Any]) -> bool:
    """Set ``values`` and save (with a history reason) only when something differs."""
    changed = [name for name, value in values.items() if getattr(instance, name) != value]
    if instance.pk is not None and not changed:
        return False
    for name in changed:
        setattr(instance, name, values[name])
    instance._change_reason = REASON  # read by simple-history where the model has history
    instance.save()
    return True


def _superuser(password: str, *, reset: bool) -> Any:
    User = get_user_model()
    user = User.objects.filter(username=SUPERUSER).first() or User(username=SUPERUSER)
    values = {
        "first_name": "Demo",
        "last_name": "Admin",
        "email": "admin@example.com",
        "is_staff": True,
        "is_superuser": True,
        "is_active": True,
    }
    if user.pk is None or reset:
        values["password"] = password
    _save_if_changed(user, values)
    return user


def _user(person: Person, password: str, *, reset: bool) -> tuple[Any, bool]:
    User = get_user_model()
    user = User.objects.filter(username=person.username).first()
    created = user is None
    user = user or User(username=person.username)
    values = {
        "first_name": person.first_name,
        "last_name": person.last_name,
        "email": person.email,
        "is_staff": True,
        "is_active": True,
    }
    if created or reset:
        values["password"] = password
    _save_if_changed(user, values)
    group = Group.objects.get(name=person.group)
    if list(user.groups.all()) != [group]:
        user.groups.set([group])
    return user, created


def _contacts(users: dict[str, Any]) -> None:
    contacts = {}
    for person in PEOPLE:
        contact = Contact.objects.filter(user=users[person.username]).first() or Contact()
        _save_if_changed(
            contact,
            {
                "name": person.full_name,
                "phone": person.phone,
                "email": person.email,
                "slack_handle": f"@{person.username}",
                "user": users[person.username],
            },
        )
        contacts[person.username] = contact
    board = Contact.objects.filter(name=BOARD_CONTACT["name"], user=None).first() or Contact()
    _save_if_changed(board, BOARD_CONTACT)

    for role in ResponseRole.objects.all():
        holders = {p.backup: contacts[p.username] for p in PEOPLE if p.role == role.key}
        if holders:
            _save_if_changed(
                role,
                {"primary_contact": holders.get(False), "backup_contact": holders.get(True)},
            )
    for level in EscalationContact.objects.all():
        matches = [contacts[p.username] for p in PEOPLE if p.escalation == level.key]
        contact = matches[0] if matches else (board if level.key == "board" else None)
        if contact is not None:
            _save_if_changed(level, {"contact": contact})


def _services(users: dict[str, Any]) -> None:
    for values in SERVICES:
        values = {**values, "owner": users[values["owner"]], "is_active": True}
        service = Service.objects.filter(slug=values["slug"]).first() or Service()
        _save_if_changed(service, values)


@contextlib.contextmanager
def _at(moment: datetime) -> Iterator[None]:
    if time_machine is None:
        yield
        return
    with time_machine.travel(moment, tick=False):
        yield


def _play(story: Story, *, users: dict[str, Any], now: datetime) -> tuple[Incident, bool]:
    existing = Incident.objects.filter(title=story.title).order_by("pk").first()
    if existing is not None:
        return existing, False

    detected = now - story.detected
    create = dict(story.create)
    impact_offset = create.pop("impact_started_minutes", None)
    if impact_offset is not None:
        create["impact_started_at"] = detected + timedelta(minutes=impact_offset)
    # One transaction per story: after-commit reactions (Celery tasks) are published once the
    # whole story is in, at the real time, while every row written carries its story time.
    with transaction.atomic():
        with _at(detected):
            incident = incident_create(
                actor=_actor(story.creator, users),
                source=story.source,
                title=story.title,
                severity=story.severity,
                detected_at=detected,
                paging="none" if ends(story) else "team",
                **create,
            )
        for step in story.steps:
            with _at(detected + timedelta(minutes=step.minutes)):
                incident = _apply(step, incident=incident, users=users)
    return incident, True


def _actor(username: str | None, users: dict[str, Any]) -> Any:
    return None if username is None else users[username]


def _apply(step: Step, *, incident: Incident, users: dict[str, Any]) -> Incident:
    common = {"incident": incident, "actor": _actor(step.actor, users), "source": step.source}
    params = dict(step.params)
    handlers: dict[str, Callable[[], Any]] = {
        "note": lambda: incident_note_add(**common, body=params["body"], kind=Kind.NOTE),
        "decision": lambda: incident_note_add(**common, body=params["body"], kind=Kind.DECISION),
        "role": lambda: incident_role_assign(
            **common, role=params["role"], user=users[params["user"]]
        ),
        "severity": lambda: incident_change_severity(**common, **params),
        "update": lambda: incident_update(**common, **params),
    }
    if step.verb in handlers:
        handlers[step.verb]()
        return Incident.objects.get(pk=incident.pk)
    if "duplicate_of" in params:
        params["duplicate_of"] = Incident.objects.get(title=params["duplicate_of"])
    return incident_transition(**common, action=step.verb, **params)
