"""The KPI demo's cast and its plan: who manages, leads and logs the incidents, and which
incidents happen when — about 20-35 a month at weighted severities, a few false alarms and
duplicates — drawn from a ``random.Random`` seeded with the current month, so a given month
always plans the same history.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from incidents.models import DetectionSource

from . import catalog
from .catalog import STORIES, Story

SEED = 913
MANAGERS = ("maria", "daniel")
LEADS = ("priya", "tom")
CREATORS = {  # who logs an incident by hand, by detection source (monitoring logs itself)
    DetectionSource.CUSTOMER_REPORT: "daniel",
    DetectionSource.SUPPORT_ESCALATION: "maria",
    DetectionSource.THIRD_PARTY: "tom",
    DetectionSource.ROUTINE_CHECK: "priya",
    DetectionSource.SECURITY_MONITORING: "priya",
}
SEVERITIES = (1, 2, 3, 4)
SEVERITY_WEIGHTS = (1, 3, 8, 6)


def month_start(day: date, back: int) -> date:
    """The first day of the month ``back`` months before ``day``'s."""
    index = day.year * 12 + day.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


class Players:
    def __init__(self) -> None:
        users = get_user_model().objects.filter(
            username__in={*MANAGERS, *LEADS, *CREATORS.values()}
        )
        self.users = {user.username: user for user in users}

    def __getitem__(self, name: str):
        return self.users[name]


@dataclass
class Plan:
    story: Story
    detected: datetime
    severity: int
    progress: float  # 0 for the oldest month, 1 for the current one: the trend
    rng: random.Random
    outcome: str = "resolved"  # or "false_alarm"; "duplicate" for a second report
    title: str = ""


def history_plan(*, months: int, now: datetime) -> list[Plan]:
    rng = random.Random(f"{SEED}-{month_start(timezone.localdate(now), 0)}")
    zone = timezone.get_current_timezone()
    today = timezone.localdate(now)
    plans: list[Plan] = []
    for back in range(months, -1, -1):
        first = month_start(today, back)
        following = month_start(today, back - 1)
        start = datetime.combine(first, datetime.min.time(), tzinfo=zone)
        end = min(datetime.combine(following, datetime.min.time(), tzinfo=zone), now)
        # Nothing in the last six hours: every incident has its whole story behind it.
        end = min(end, now - timedelta(hours=6))
        span = (end - start).total_seconds()
        if span <= 0:
            continue
        whole = (datetime.combine(following, datetime.min.time(), tzinfo=zone) - start).days
        count = round(rng.randint(20, 35) * span / (whole * 86400))
        progress = 1 - back / months if months else 1.0
        for _ in range(count):
            detected = start + timedelta(seconds=rng.uniform(0, span))
            story = rng.choice(STORIES)
            plan = Plan(
                story=story,
                detected=detected.replace(microsecond=0),
                severity=rng.choices(SEVERITIES, SEVERITY_WEIGHTS)[0],
                progress=progress,
                rng=random.Random(rng.random()),
                title=story.title,
            )
            roll = rng.random()
            if roll < 0.04:
                plan.outcome = "false_alarm"
                plan.title = rng.choice(catalog.FALSE_ALARMS)
                plan.severity = rng.choice((3, 4))
            elif roll < 0.09:
                plan.outcome = "duplicate"
            plans.append(plan)
    plans.sort(key=lambda plan: plan.detected)
    return plans
