"""The status page's demo data, on top of the incident demo (``manage.py demo_data``): the
demo's customer-facing services as components (one group, public names), 90 days of status
history with a few bad days and a completed maintenance, the demo incidents' published updates
(customer-safe titles and bodies, the business liaison's approval where policy needs it, a
restoration notice on the resolved and closed ones), one component degraded now, a
maintenance scheduled next week, and the people customer messaging reaches: two customers (an
enterprise account with an SLA owned by the business liaison, and a standard one) with their
contacts, and two confirmed email subscribers (one to every component, one to checkout only).

Everything is written through the services the admin and the API use (``component_create``,
``component_edit``, the maintenance steps, ``status_update_create/approve/publish`` and
``status_update_restoration_prepare``), each at its moment under time-machine, in time order
(a component's status history is never rewritten backwards). Loaded once: when the demo's
components exist it loads nothing (idempotent). Needs the incident demo and time-machine (the
``dev`` extra, which ``make run`` installs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from incidents.events import incident_events_follow
from incidents.models import Incident, Service, Source

from ..models import (
    Component,
    ComponentStatus,
    CustomerPlan,
    Maintenance,
    Subscriber,
    SubscriberKind,
    SubscriberState,
)
from ..services.catalog import component_add, component_edit, component_group_create
from ..services.customers import customer_create
from ..services.maintenance import (
    maintenance_complete,
    maintenance_schedule,
    maintenance_start,
)
from ..services.restoration import (
    restoration_body,
    restoration_components,
    status_update_restoration_prepare,
)
from ..services.updates import (
    needs_approval,
    status_update_approve,
    status_update_create,
    status_update_edit,
    status_update_publish,
)

try:
    import time_machine
except ImportError:  # a production install without the dev extra
    time_machine = None

C = ComponentStatus
GROUP = "Online store"
# (service slug, in the group, position, public description)
COMPONENTS = [
    ("web-app", True, 0, "The website customers browse and buy from."),
    ("checkout", True, 1, "Cart, checkout and card payments."),
    ("auth", True, 2, "Signing in to your account."),
    ("cdn", False, 3, "Product images and downloads."),
    ("email-provider", False, 4, "Order confirmations and password reset emails."),
]
HISTORY_DAYS = 90
LEAD = "lena"  # Communications Lead
LIAISON = "omar"  # Business Liaison

# Bad days before the demo week: (days ago, start, minutes, component, status, reason).
BAD_DAYS = [
    (83, time(14, 10), 210, "cdn", C.DEGRADED_PERFORMANCE, "CDN slow in two European regions"),
    (61, time(9, 5), 75, "checkout", C.PARTIAL_OUTAGE, "Some card payments declined"),
    (47, time(22, 14), 37, "web-app", C.MAJOR_OUTAGE, "Website unreachable after a DNS change"),
    (33, time(6, 0), 330, "email-provider", C.DEGRADED_PERFORMANCE, "Emails delayed"),
    (12, time(13, 0), 45, "auth", C.PARTIAL_OUTAGE, "Some sign-ins failing"),
]
# A maintenance that has happened: (days ago, start, minutes, components, title, body).
PAST_MAINTENANCE = (
    20,
    time(2, 0),
    90,
    ["web-app", "checkout"],
    "Website and checkout platform upgrade",
    "We upgraded the platform behind the website and checkout. Both may have been briefly "
    "unavailable during the window.",
)
# Next week's maintenance: (days ahead, start, minutes, components, title, body).
NEXT_MAINTENANCE = (
    7,
    time(2, 0),
    120,
    ["checkout"],
    "Payment system maintenance",
    "We are upgrading the payment system's database. **Checkout may be unavailable for up "
    "to 15 minutes** during the window; orders placed before it are not affected.",
)


@dataclass(frozen=True)
class Post:
    """One published update, ``minutes`` after the incident's detection."""

    minutes: float
    title: str
    status: str  # investigating / identified / monitoring
    body: str
    components: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Coverage:
    """What the status page said about one demo incident; ``restored`` (minutes after
    detection) publishes the restoration notice Vigil prepares from the incident's data."""

    story: str
    posts: list[Post]
    restored: float | None = None


COVERAGE = [
    Coverage(
        story="Orders database failover: checkout and order history unavailable",
        posts=[
            Post(
                20,
                "Checkout unavailable",
                "investigating",
                "Customers cannot complete orders or see their order history. We are "
                "investigating and will post an update within 30 minutes.",
                {"checkout": C.MAJOR_OUTAGE, "web-app": C.PARTIAL_OUTAGE},
            ),
            Post(
                38,
                "Checkout unavailable",
                "identified",
                "We have found the cause and are moving checkout to standby systems. Orders "
                "cannot be placed until this is done.",
            ),
            Post(
                55,
                "Checkout recovering",
                "monitoring",
                "Checkout is working again on the standby systems. Some pages may be slower "
                "than usual while we monitor.",
                {"checkout": C.DEGRADED_PERFORMANCE, "web-app": C.OPERATIONAL},
            ),
        ],
        restored=108,
    ),
    Coverage(
        story="Order confirmation emails delayed by up to 40 minutes",
        posts=[
            Post(
                12,
                "Order confirmation emails delayed",
                "investigating",
                "Order confirmation emails are arriving up to 40 minutes late. **Your orders "
                "are placed normally**; there is no need to order again.",
                {"email-provider": C.DEGRADED_PERFORMANCE},
            ),
            Post(
                62,
                "Order confirmation emails delayed",
                "monitoring",
                "Emails are now sent through a second provider and arrive on time. Delayed "
                "emails are being delivered.",
            ),
        ],
        restored=195,
    ),
    Coverage(
        story="Product images load slowly in Europe",
        posts=[
            Post(
                20,
                "Slow product images in Europe",
                "identified",
                "Product images load slowly for customers in Europe because of a problem at "
                "our content delivery provider. Shopping and checkout work normally.",
                {"cdn": C.DEGRADED_PERFORMANCE},
            ),
            Post(
                70,
                "Slow product images in Europe",
                "monitoring",
                "We have moved European traffic to a second provider; images should load "
                "faster. We are monitoring before we call it resolved.",
            ),
        ],
    ),
]


@dataclass
class Result:
    loaded: bool = False
    components: list[Component] = field(default_factory=list)
    published: int = 0
    maintenances: int = 0
    customers: int = 0
    subscribers: int = 0
    missing: list[str] = field(default_factory=list)


def missing_prerequisites() -> list[str]:
    """What the status demo needs and does not find: the incident demo's services, people and
    incidents, and time-machine."""
    missing = []
    if time_machine is None:
        missing.append("time-machine (install the dev extra: pip install -e '.[dev]')")
    slugs = {slug for slug, *_ in COMPONENTS}
    found = set(Service.objects.filter(slug__in=slugs).values_list("slug", flat=True))
    if found != slugs:
        missing.append(f"the demo services ({', '.join(sorted(slugs - found))})")
    users = set(
        get_user_model()
        .objects.filter(username__in=[LEAD, LIAISON])
        .values_list("username", flat=True)
    )
    if users != {LEAD, LIAISON}:
        missing.append(f"the demo users {LEAD} and {LIAISON}")
    titles = {coverage.story for coverage in COVERAGE}
    if Incident.objects.filter(title__in=titles).count() < len(titles):
        missing.append("the demo incidents")
    return missing


def already_loaded() -> bool:
    return Component.objects.filter(service__slug__in=[s for s, *_ in COMPONENTS]).exists()


@contextlib.contextmanager
def _at(moment: datetime) -> Iterator[None]:
    with time_machine.travel(moment, tick=False):
        yield


def load(*, now: datetime | None = None) -> Result:
    """Load the status page demo (see the module docstring). Loads nothing when the demo's
    components exist already; raises RuntimeError naming what is missing."""
    result = Result()
    if already_loaded():
        result.components = list(
            Component.objects.filter(service__slug__in=[s for s, *_ in COMPONENTS])
        )
        return result
    missing = missing_prerequisites()
    if missing:
        raise RuntimeError("; ".join(missing))
    now = now or timezone.now()
    User = get_user_model()
    lead = User.objects.get(username=LEAD)
    liaison = User.objects.get(username=LIAISON)
    day_zero = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)

    def on_day(days: int, clock: time) -> datetime:
        return day_zero + timedelta(days=days, hours=clock.hour, minutes=clock.minute)

    # Follow the demo incidents' events first, as the worker will once Vigil starts: the
    # restoration notice a resolution prepares is then the draft published below, instead of
    # a second draft prepared after this one was published.
    for incident_id in Incident.objects.filter(
        title__in=[coverage.story for coverage in COVERAGE]
    ).values_list("pk", flat=True):
        incident_events_follow(incident_id=incident_id)

    # History starts 90 days back, or earlier when the incident demo was loaded long ago (its
    # incidents' updates must come after the components' first intervals).
    since = day_zero - timedelta(days=HISTORY_DAYS)
    detected = Incident.objects.filter(title__in=[c.story for c in COVERAGE]).values_list(
        "detected_at", flat=True
    )
    earliest = min(detected)
    if earliest < since:
        since = timezone.localtime(earliest).replace(hour=0, minute=0, second=0, microsecond=0)

    with transaction.atomic():
        components = _components(lead=lead, since=since)
        result.components = list(components.values())
        # Every later write, in time order: a component's history only moves forward.
        steps: list[tuple[datetime, int, Callable[[], Any]]] = []

        def step(at: datetime, action: Callable[[], Any]) -> None:
            steps.append((at, len(steps), action))

        for days, clock, minutes, code, status, reason in BAD_DAYS:
            start = on_day(-days, clock)
            component = components[code]
            step(start, _status_change(component, status, reason, lead))
            step(
                start + timedelta(minutes=minutes),
                _status_change(component, C.OPERATIONAL, f"Resolved: {reason}", lead),
            )
        _past_maintenance(step, on_day=on_day, components=components, lead=lead)
        for coverage in COVERAGE:
            incident = Incident.objects.get(title=coverage.story)
            _coverage(step, coverage, incident=incident, components=components, lead=lead,
                      liaison=liaison, result=result)  # fmt: skip
        for _at_time, _order, action in sorted(steps, key=lambda s: (s[0], s[1])):
            with _at(_at_time):
                action()
        days, clock, minutes, codes, title, body = NEXT_MAINTENANCE
        start = on_day(days, clock)
        maintenance_schedule(
            actor=lead,
            source=Source.ADMIN,
            title=title,
            body=body,
            scheduled_for=start,
            scheduled_until=start + timedelta(minutes=minutes),
            components=[components[code] for code in codes],
        )
        result.maintenances = Maintenance.objects.count()
        _messaging(lead=lead, liaison=liaison, components=components, result=result)
    result.loaded = True
    return result


# (name, plan, SLA terms, services, contacts as (name, address, title))
CUSTOMERS = [
    (
        "Northwind Traders",
        CustomerPlan.ENTERPRISE,
        "99.95 % monthly availability; 1 h response for Sev 1",
        ["web-app", "checkout", "auth"],
        [
            ("Nancy Davolio", "nancy.davolio@northwind.example", "IT Director"),
            ("Andrew Fuller", "andrew.fuller@northwind.example", "VP Operations"),
        ],
    ),
    (
        "Contoso Pharmacy",
        CustomerPlan.STANDARD,
        "",
        ["web-app", "checkout"],
        [("Kim Abercrombie", "kim@contoso.example", "Store manager")],
    ),
]
# (address, components followed, or None for every component)
SUBSCRIBERS = [("status-watcher@example.com", None), ("shop-owner@example.net", ["checkout"])]


def _messaging(*, lead: Any, liaison: Any, components: dict[str, Component], result: Result):
    """The customers (through the service the admin and API use) and two subscribers, written
    as confirmed: the demo has no inbox to click their confirmation links in."""
    services = {service.slug: service for service in Service.objects.all()}
    for name, plan, sla, slugs, contacts in CUSTOMERS:
        customer_create(
            actor=lead,
            source=Source.ADMIN,
            name=name,
            plan=plan,
            has_sla=bool(sla),
            sla_terms=sla,
            account_owner=liaison,
            services=[services[slug] for slug in slugs if slug in services],
            contacts=[{"name": n, "email": e, "title": t} for n, e, t in contacts],
        )
        result.customers += 1
    now = timezone.now()
    for address, codes in SUBSCRIBERS:
        subscriber = Subscriber.objects.create(
            kind=SubscriberKind.EMAIL,
            email=address,
            state=SubscriberState.ACTIVE,
            all_components=codes is None,
            confirmation_sent_at=now,
            confirmed_at=now,
        )
        if codes:
            subscriber.components.set([components[code] for code in codes])
        result.subscribers += 1


def _components(*, lead: Any, since: datetime) -> dict[str, Component]:
    with _at(since):
        group = component_group_create(
            actor=lead,
            source=Source.ADMIN,
            name=GROUP,
            description="Shopping, checkout and your account.",
        )
        made = {}
        for slug, grouped, position, description in COMPONENTS:
            made[slug] = component_add(
                actor=lead,
                source=Source.ADMIN,
                service=Service.objects.get(slug=slug),
                group=group if grouped else None,
                position=position,
                description=description,
                start_date=since.date(),
            )
    return made


def _status_change(component: Component, status: str, reason: str, actor: Any):
    def change() -> None:
        component_edit(
            component=component, actor=actor, source=Source.ADMIN, status=status, reason=reason
        )

    return change


def _past_maintenance(step, *, on_day, components: dict[str, Component], lead: Any) -> None:
    days, clock, minutes, codes, title, body = PAST_MAINTENANCE
    start = on_day(-days, clock)
    end = start + timedelta(minutes=minutes)
    made: dict[str, Maintenance] = {}

    def schedule() -> None:
        made["window"] = maintenance_schedule(
            actor=lead,
            source=Source.ADMIN,
            title=title,
            body=body,
            scheduled_for=start,
            scheduled_until=end,
            components=[components[code] for code in codes],
        )

    # What the beat sweep does at the window's start and end.
    step(start - timedelta(days=7), schedule)
    step(start, lambda: maintenance_start(maintenance=made["window"], actor=None,
                                          source=Source.SYSTEM, now=start))  # fmt: skip
    step(end, lambda: maintenance_complete(maintenance=made["window"], actor=None,
                                           source=Source.SYSTEM, now=end))  # fmt: skip


def _coverage(
    step,
    coverage: Coverage,
    *,
    incident: Incident,
    components: dict[str, Component],
    lead: Any,
    liaison: Any,
    result: Result,
) -> None:
    detected = incident.detected_at

    def publish(update) -> None:
        # The business liaison approves where the policy asks it (Sev 1-2), a minute later.
        if needs_approval(update):
            status_update_approve(status_update=update, actor=liaison, source=Source.ADMIN)
        status_update_publish(status_update=update, actor=lead, source=Source.ADMIN)
        result.published += 1

    for post in coverage.posts:

        def write(post: Post = post) -> None:
            update = status_update_create(
                incident=incident,
                actor=lead,
                source=Source.ADMIN,
                public_title=post.title,
                public_status=post.status,
                body=post.body,
                components=[(components[code], status) for code, status in post.components.items()],
            )
            publish(update)

        step(detected + timedelta(minutes=post.minutes), write)

    if coverage.restored is not None:

        def restore() -> None:
            incident.refresh_from_db()
            update = status_update_restoration_prepare(incident=incident)
            if update is not None:
                # The lead edits the prepared notice: the incident keeps the name customers
                # know it by, and (the draft was prepared when the incident's events were
                # followed, before the components existed) it names the components it touched.
                touched = restoration_components(incident)
                update = status_update_edit(
                    status_update=update,
                    actor=lead,
                    source=Source.ADMIN,
                    public_title=coverage.posts[0].title,
                    body=restoration_body(incident=incident, components=touched),
                    components=[(component, C.OPERATIONAL) for component in touched],
                )
                publish(update)

        step(detected + timedelta(minutes=coverage.restored), restore)
