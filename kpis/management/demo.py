"""The KPI demo, on top of the incident demo (``manage.py demo_data``) and, for the
satisfaction survey's customers, the status page demo: six whole months of incident history
before the current month plus the current month so far, so the KPI dashboard and the monthly
report have something to show at the first ``make run``.

Each incident is played through the services the admin and the API use (``incident_create``,
the role assignments, ``incident_transition``, ``incident_update``; the review's booking,
writing, action items and publication; the survey's invitations and ratings), every step at its
own moment. About
20-35 incidents a month (fewer Sev 1, more Sev 3-4) over the demo's services and detection
sources; most with an impact-start time (the others are "not measurable" for MTTD); detection,
acknowledgement and resolution times that improve over the months so the charts have a trend; a
few reopened or handed to another technical lead (not resolved on first contact), a few false
alarms and duplicates.

The apps that follow incidents are not subscribed while the history is written: its events are
stored as handled, as the core stores an event nobody follows (a later follower does not replay
history). Followed, six months of incidents would page, remind and message people at the next
``make run`` (the worker runs the reactions then, whatever their time), and take minutes to
load. What the followers would have left that the KPIs read is written here through the same
services: the review booked at closure (``review_book``) and the survey's invitations
(``survey_send``), without their e-mails (months-old invitations would all go out when the
worker starts). So no escalation step fires either: first-contact resolution varies through
reopens and technical leads handed over.

Deterministic for a given current month (a seeded ``random.Random``). Loaded once: when any
incident has one of the catalogue's titles (:mod:`.catalog`), it loads nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from unittest import mock

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from incidents.events import EVENT_NAMES, events_subscribe, events_unsubscribe, subscribed_handlers
from incidents.models import DetectionSource, Incident, Level, ResponseRole, Service, Source
from incidents.services import (
    incident_create,
    incident_role_assign,
    incident_transition,
    incident_update,
)
from incidents.services.sla import sla_breaches_record_due
from reviews.models import ActionKind, ActionStatus, ReviewStatus
from reviews.services.actions import action_item_create, action_item_set_status
from reviews.services.booking import review_book, review_required
from reviews.services.reviews import review_mark_held, review_publish, review_sections_update

from ..models import SurveyInvitation
from ..services.reports import monthly_report_generate
from ..services.rollups import kpi_months_refresh
from ..services.survey import survey_comment, survey_rate, survey_send, survey_token
from . import catalog
from .catalog import STORIES, Story
from .demo_plan import CREATORS, LEADS, MANAGERS, Plan, Players, history_plan, month_start

MONTHS = 6
# Minutes: acknowledgement after detection, and resolution after detection, by severity.
ACK_MINUTES = {1: (2, 12), 2: (3, 20), 3: (5, 35), 4: (8, 40)}
RESOLVE_MINUTES = {1: (20, 240), 2: (40, 360), 3: (60, 480), 4: (90, 600)}
IMPACT = {1: Level.HIGH, 2: Level.HIGH, 3: Level.MEDIUM, 4: Level.LOW}
URGENCY = {1: Level.HIGH, 2: Level.MEDIUM, 3: Level.MEDIUM, 4: Level.LOW}
# An incident resolved this long before now is closed, its report completed (the 48-hour rule).
CLOSED_AFTER = timedelta(days=2)


@dataclass
class Result:
    loaded: bool = False
    incidents: int = 0
    months: int = 0
    reviews: int = 0
    ratings: int = 0
    seconds: float = 0.0


@contextlib.contextmanager
def _at(moment: datetime) -> Iterator[None]:
    """Every service, ``auto_now`` field and history row reads the time through
    ``django.utils.timezone.now``; patching it plays a step at its moment. time-machine (what
    the other demos use) is only in the ``dev`` extra, and this demo must load on an install
    without it too; nothing the services call reads the clock any other way."""
    with mock.patch("django.utils.timezone.now", return_value=moment):
        yield


@contextlib.contextmanager
def _followers_muted() -> Iterator[None]:
    """Unsubscribe every follower of incident events for the block, then subscribe them again
    as they were (see the module docstring)."""
    saved = {
        (handler.name, name, handler.callbacks[name])
        for name in EVENT_NAMES
        for handler in subscribed_handlers(name)
    }
    for handler_name in {name for name, _, _ in saved}:
        events_unsubscribe(handler=handler_name)
    try:
        yield
    finally:
        for handler_name, event, callback in saved:
            events_subscribe(handler=handler_name, event=event, callback=callback)


# The services that write the history's e-mails (review invitations, survey invitations, action
# item notices) into the outbox, each under the name it imported the outbox's function as.
HISTORY_MAILERS = ("reviews.services", "kpis.services", "communications.services")
# Each stand-in returns what nothing written looks like (no row, no ids).
OUTBOX_FUNCTIONS = {
    "notification_enqueue": lambda *args, **kwargs: None,
    "notification_enqueue_many": lambda *args, **kwargs: 0,
    "notification_enqueue_together": lambda *args, **kwargs: [],
}


@contextlib.contextmanager
def _history_not_mailed() -> Iterator[None]:
    """Write no outbox message for the history: months-old review and survey invitations would
    all be sent at the worker's start (hundreds of e-mails at the first ``make run``). The rows
    the KPIs read (reviews, attendees, survey invitations and ratings) are still written."""
    import sys

    with contextlib.ExitStack() as stack:
        for name, module in list(sys.modules.items()):
            if module is None or not name.startswith(HISTORY_MAILERS):
                continue
            for function, stand_in in OUTBOX_FUNCTIONS.items():
                if hasattr(module, function):
                    stack.enter_context(mock.patch.object(module, function, stand_in))
        yield


def already_loaded() -> bool:
    titles = [story.title for story in STORIES] + list(catalog.FALSE_ALARMS)
    return Incident.objects.filter(title__in=titles).exists()


def missing_prerequisites() -> list[str]:
    missing = []
    names = {*MANAGERS, *LEADS, *CREATORS.values()}
    found = set(
        get_user_model().objects.filter(username__in=names).values_list("username", flat=True)
    )
    if found != names:
        missing.append("the demo users " + ", ".join(sorted(names - found)))
    slugs = {slug for story in STORIES for slug in story.services}
    if Service.objects.filter(slug__in=slugs).count() != len(slugs):
        missing.append("the demo services")
    return missing


def load(*, months: int = MONTHS, now: datetime | None = None) -> Result:
    """Load the KPI demo (see the module docstring); loads nothing when it is there. Raises
    RuntimeError naming what is missing."""
    started = time.monotonic()
    result = Result(months=months)
    if already_loaded():
        return result
    missing = missing_prerequisites()
    if missing:
        raise RuntimeError("; ".join(missing))
    now = now or timezone.now()
    players = Players()
    plans = history_plan(months=months, now=now)
    with _followers_muted(), _history_not_mailed():
        for plan in plans:
            _play(plan, players=players, now=now, result=result)
    # The dashboard's charts read stored rollups and the admin lists monthly reports: store
    # them now rather than at the first nightly refresh, and report every whole month (not
    # e-mailed: that is the beat task's, on the 1st).
    kpi_months_refresh(now=now, backfill=max(12, months + 1))
    for back in range(months, 0, -1):
        monthly_report_generate(month=month_start(now.date(), back), now=now)
    result.loaded = True
    result.seconds = time.monotonic() - started
    return result


def _minutes(plan: Plan, low: float, high: float, *, improve: float = 0.5) -> float:
    """A duration between ``low`` and ``high`` minutes, skewed short, longer in the older
    months (by up to ``improve``: the trend)."""
    value = low + (high - low) * plan.rng.random() ** 1.7
    return value * (1 + improve * (1 - plan.progress))


def _play(plan: Plan, *, players: Players, now: datetime, result: Result) -> None:
    rng = plan.rng
    story = plan.story
    creator_name = CREATORS.get(story.detection)
    creator = players[creator_name] if creator_name else None
    source = Source.ADMIN if creator else Source.WEBHOOK
    manager = players[rng.choice(MANAGERS)]
    lead = players[rng.choice(LEADS)]
    detected = plan.detected
    impact_started = None
    if rng.random() < 0.85:
        impact_started = detected - timedelta(minutes=_minutes(plan, 1, 15, improve=0.6))
    ack = detected + timedelta(minutes=_minutes(plan, *ACK_MINUTES[plan.severity]))
    resolved = detected + timedelta(minutes=_minutes(plan, *RESOLVE_MINUTES[plan.severity]))
    resolved = max(resolved, ack + timedelta(minutes=10))

    def step(moment: datetime, action) -> None:
        with _at(moment):
            action()

    # One transaction per incident: an incident is all there or not at all, and SQLite commits
    # once per incident rather than once per step.
    with transaction.atomic():
        with _at(detected):
            incident = incident_create(
                actor=creator,
                source=source,
                title=plan.title,
                severity=plan.severity,
                impact=IMPACT[plan.severity],
                urgency=URGENCY[plan.severity],
                summary=story.summary,
                detection_source=story.detection,
                services=list(story.services),
                impact_started_at=impact_started,
                detected_at=detected,
            )
        result.incidents += 1
        if plan.outcome == "duplicate":
            _duplicate(plan, incident, players=players, result=result)
        if plan.outcome == "false_alarm":
            cancel_at = detected + timedelta(minutes=rng.uniform(5, 20))
            step(
                cancel_at,
                lambda: incident_transition(
                    incident=incident,
                    action="cancel",
                    actor=manager,
                    source=Source.ADMIN,
                    reason=catalog.FALSE_ALARM_REASON,
                ),
            )
            return

        def acknowledge() -> None:
            sla_breaches_record_due(incident=incident, now=ack)
            common = {"incident": incident, "actor": manager, "source": Source.ADMIN}
            incident_role_assign(**common, role=ResponseRole.INCIDENT_MANAGER, user=manager)
            incident_role_assign(**common, role=ResponseRole.TECHNICAL_LEAD, user=lead)
            incident_transition(
                incident=incident, action="investigate", actor=lead, source=Source.ADMIN
            )

        step(ack, acknowledge)
        if rng.random() < 0.1:
            # Handed to the other technical lead: not resolved by the first one (FCR).
            other = players[next(name for name in LEADS if name != lead.username)]
            handover = ack + (resolved - ack) * rng.uniform(0.2, 0.5)
            step(
                handover,
                lambda: incident_role_assign(
                    incident=incident,
                    role=ResponseRole.TECHNICAL_LEAD,
                    user=other,
                    actor=manager,
                    source=Source.ADMIN,
                ),
            )
            lead = other
        if plan.severity <= 2 or rng.random() < 0.5:
            mitigated = ack + (resolved - ack) * rng.uniform(0.4, 0.8)
            step(mitigated, lambda: _transition(incident, "mitigate", lead))
        step(resolved, lambda: _resolve(incident, lead, story.resolution, resolved))
        last = resolved
        # The fix did not hold: more often in the older months (part of the trend).
        if rng.random() < 0.18 - 0.1 * plan.progress and resolved + timedelta(hours=6) < now:
            reopened = resolved + timedelta(minutes=rng.uniform(30, 180))
            step(
                reopened,
                lambda: incident_transition(
                    incident=incident,
                    action="reopen",
                    actor=manager,
                    source=Source.ADMIN,
                    reason="The errors came back after the fix.",
                ),
            )
            last = reopened + timedelta(minutes=rng.uniform(20, 120))
            step(last, lambda: _resolve(incident, lead, story.resolution, last))
        _survey(incident, at=last + timedelta(minutes=5), now=now, rng=rng, result=result)
        if last + CLOSED_AFTER > now:
            return
        closing = last + timedelta(hours=rng.uniform(3, 40))
        step(closing, lambda: _close(incident, manager, story))
        _review(plan, incident, manager=manager, lead=lead, closed=closing, now=now, result=result)


def _transition(incident: Incident, action: str, actor) -> None:
    incident_transition(incident=incident, action=action, actor=actor, source=Source.ADMIN)


def _resolve(incident: Incident, lead, resolution: str, at: datetime) -> None:
    sla_breaches_record_due(incident=incident, now=at)
    incident_transition(
        incident=incident,
        action="resolve",
        actor=lead,
        source=Source.ADMIN,
        resolution=resolution,
    )


def _close(incident: Incident, manager, story: Story) -> None:
    incident_update(
        incident=incident,
        actor=manager,
        source=Source.ADMIN,
        root_cause=story.root_cause,
        business_impact="Customers of the affected services saw errors or delays; "
        "no data was lost.",
    )
    incident_transition(incident=incident, action="close", actor=manager, source=Source.ADMIN)


def _duplicate(plan: Plan, original: Incident, *, players: Players, result: Result) -> None:
    """A second report of the same problem, logged a few minutes later and cancelled as a
    duplicate by the incident manager."""
    rng = plan.rng
    reported = plan.detected + timedelta(minutes=rng.uniform(3, 10))
    with _at(reported):
        second = incident_create(
            actor=players["daniel"],
            source=Source.ADMIN,
            title=plan.title,
            severity=plan.severity,
            summary="A customer reported the same problem to support.",
            detection_source=DetectionSource.CUSTOMER_REPORT,
            services=list(plan.story.services),
            detected_at=reported,
        )
    cancelled = reported + timedelta(minutes=rng.uniform(2, 6))
    with _at(cancelled):
        incident_transition(
            incident=second,
            action="cancel",
            actor=players["maria"],
            source=Source.ADMIN,
            duplicate_of=original,
        )
    result.incidents += 1


def _survey(incident: Incident, *, at: datetime, now: datetime, rng, result: Result) -> None:
    """The survey's invitations (sent at the resolution, as the survey's follower would) and the
    ratings of the contacts who answer, a few hours later."""
    with _at(at):
        survey_send(incident=incident)
    # Satisfaction follows the speed of the resolution, with the noise of real answers.
    incident = Incident.objects.get(pk=incident.pk)
    slow = (incident.resolved_at - incident.detected_at) > timedelta(hours=4)
    for invitation in SurveyInvitation.objects.filter(incident=incident, rated_at__isnull=True):
        if rng.random() < 0.4:
            continue
        answered = at + timedelta(hours=rng.uniform(0.5, 30))
        if answered > now:
            continue
        rating = rng.choices((1, 2, 3, 4, 5), (1, 2, 3, 6, 5) if slow else (0, 1, 2, 7, 8))[0]
        with _at(answered):
            survey_rate(token=survey_token(invitation, "rate"), rating=rating)
            comment = catalog.SURVEY_COMMENTS.get(rating)
            if comment and rng.random() < 0.5:
                survey_comment(
                    token=survey_token(invitation, "comment"), rating=rating, comment=comment
                )
        result.ratings += 1


def _review(
    plan: Plan, incident: Incident, *, manager, lead, closed: datetime, now: datetime, result
) -> None:
    """The review: booked at closure for the severities the policy requires one for (as the
    booking follower would), on demand for a few others; held a few days later, written with
    its root-cause category and action items, and published."""
    rng = plan.rng
    with _at(closed + timedelta(minutes=1)):
        if review_required(incident=incident):
            review = review_book(incident=incident, actor=None, source=Source.SYSTEM, required=True)
        elif rng.random() < 0.2:
            review = review_book(incident=incident, actor=manager, source=Source.ADMIN)
        else:
            return
    held = closed + timedelta(days=rng.uniform(1, 4))
    if held + timedelta(days=1) > now:
        return
    story = plan.story
    with _at(held + timedelta(hours=2)):
        review = review_sections_update(
            review=review,
            actor=manager,
            source=Source.ADMIN,
            overview=story.summary,
            primary_cause=story.root_cause,
            cause_category=story.category,
            lessons_learned=story.resolution,
        )
        review = review_mark_held(
            review=review,
            actor=manager,
            source=Source.ADMIN,
            held_at=held,
            attendance={attendee.pk: True for attendee in review.attendees.all()},
        )
        due = (held + timedelta(days=rng.uniform(5, 30))).date()
        items = [
            action_item_create(
                incident=incident,
                actor=manager,
                source=Source.ADMIN,
                kind=ActionKind.IMMEDIATE_FIX,
                title=f"Prevent a repeat: {story.root_cause[:120]}",
                owner=lead,
                due_date=due,
                review=review,
                from_review=True,
            )
        ]
        if rng.random() < 0.5:
            items.append(
                action_item_create(
                    incident=incident,
                    actor=manager,
                    source=Source.ADMIN,
                    kind=ActionKind.PROCESS,
                    title="Add this failure to the runbook and the alert rules",
                    owner=manager,
                    due_date=due + timedelta(days=14),
                    review=review,
                    from_review=True,
                )
            )
        review = review_publish(review=review, actor=manager, source=Source.ADMIN)
    result.reviews += review.status == ReviewStatus.PUBLISHED
    for item in items:
        # Most items get done within their due date; a few are dropped, some are still open.
        finished = held + timedelta(days=rng.uniform(2, 25))
        if finished > now:
            continue
        roll = rng.random()
        with _at(finished):
            if roll < 0.8:
                action_item_set_status(
                    item=item, actor=item.owner, source=Source.ADMIN, status=ActionStatus.DONE
                )
            elif roll < 0.9:
                action_item_set_status(
                    item=item,
                    actor=manager,
                    source=Source.ADMIN,
                    status=ActionStatus.WONT_DO,
                    reason="Superseded by the platform migration planned this quarter.",
                )
