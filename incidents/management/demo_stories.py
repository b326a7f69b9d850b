"""The demo's incident stories: each incident of the demo's week scripted as its creation and
what happens to it after (lifecycle actions, notes, decisions, roles, severity, report), in
minutes after its detection, for :mod:`.demo` to play through the incident services."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from incidents.models import DetectionSource, Level, ResponseRole, Source

IM = ResponseRole.INCIDENT_MANAGER
TL = ResponseRole.TECHNICAL_LEAD
CL = ResponseRole.COMMUNICATIONS_LEAD
BL = ResponseRole.BUSINESS_LIAISON


@dataclass(frozen=True)
class Step:
    """One thing that happens to an incident, ``minutes`` after its detection."""

    minutes: float
    actor: str | None  # a demo username, or None for Vigil itself
    verb: str  # a lifecycle action, or "note", "decision", "role", "severity", "update"
    params: dict[str, Any] = field(default_factory=dict)
    source: str = Source.ADMIN


@dataclass(frozen=True)
class Story:
    title: str
    detected: timedelta  # how long before "now" the incident was detected
    severity: int
    creator: str | None
    create: dict[str, Any]
    steps: list[Step]
    source: str = Source.ADMIN


# The lifecycle actions after which an incident is over: nobody is paged about a story ending so.
ENDING = frozenset({"resolve", "close", "cancel"})
OTHER_VERBS = frozenset({"note", "decision", "role", "severity", "update"})


def ends(story: Story) -> bool:
    actions = [step.verb for step in story.steps if step.verb not in OTHER_VERBS]
    return bool(actions) and actions[-1] in ENDING


def _role(minutes: float, role: str, user: str, actor: str = "maria") -> Step:
    return Step(minutes, actor, "role", {"role": role, "user": user})


def _note(minutes: float, actor: str, body: str, *, decision: bool = False) -> Step:
    return Step(minutes, actor, "decision" if decision else "note", {"body": body})


STORIES = [
    Story(
        title="Orders database failover: checkout and order history unavailable",
        detected=timedelta(days=6, hours=2, minutes=17),
        severity=2,
        creator=None,
        source=Source.WEBHOOK,
        create={
            "impact": Level.HIGH,
            "urgency": Level.HIGH,
            "detection_source": DetectionSource.MONITORING,
            "services": ["orders-db", "checkout", "web-app"],
            "summary": "Checkout error rate above 5 % after the orders database primary "
            "stopped accepting writes.",
            "impact_started_minutes": -4,
        },
        steps=[
            Step(5, "priya", "acknowledge"),
            _role(6, IM, "maria"),
            _role(6.5, TL, "priya"),
            Step(8, "priya", "investigate"),
            _note(
                10,
                "priya",
                "Primary orders-db-1 out of disk on the WAL volume; replicas healthy. "
                "Checkout fails every order (error rate 100 %).",
            ),
            Step(
                12,
                "maria",
                "severity",
                {
                    "severity": 1,
                    "reason": "Checkout completely unavailable, not degraded (§2.1 Sev 1).",
                },
            ),
            _role(13, CL, "lena"),
            _role(13.5, BL, "omar"),
            _note(
                18,
                "maria",
                "Promote replica orders-db-2 to primary; accept up to 30 s of replication lag.",
                decision=True,
            ),
            _note(21, "lena", "Status page updated: checkout unavailable, next update in 30 min."),
            Step(34, "priya", "mitigate"),
            _note(41, "priya", "orders-db-2 promoted; checkout traffic moving over."),
            Step(52, "priya", "monitor"),
            _note(
                70,
                "omar",
                "Finance estimate: about 1,900 orders not placed during the outage "
                "(~$142,000 at the average basket).",
            ),
            Step(
                104,
                "priya",
                "resolve",
                {
                    "resolution": "Promoted replica orders-db-2 to primary, re-pointed the "
                    "connection pooler, freed WAL disk on the old primary and rebuilt it "
                    "as a replica."
                },
            ),
            _note(106, "lena", "Status page: resolved. Restoration email sent to customers."),
            Step(
                24 * 60 + 30,
                "maria",
                "update",
                {
                    "summary": "Checkout and order history were unavailable for 1 h 44 min "
                    "after the orders database primary ran out of WAL disk space and "
                    "stopped accepting writes.",
                    "root_cause": "A stuck logical replication slot kept WAL segments from "
                    "being recycled; the WAL volume filled up over three days. Disk alerts "
                    "watched the data volume only, not the WAL volume.",
                    "business_impact": "About 1,900 orders lost (~$142,000), 12,400 customers "
                    "saw errors at checkout, 310 support tickets.",
                    "lessons_learned": "Alert on every volume (§7.2 disk 85 %) and on "
                    "replication slot lag; rehearse replica promotion quarterly.",
                    "affected_users": 12400,
                },
            ),
            Step(24 * 60 + 45, "maria", "close"),
        ],
    ),
    Story(
        title="Order confirmation emails delayed by up to 40 minutes",
        detected=timedelta(days=1, hours=2, minutes=40),
        severity=2,
        creator="tom",
        create={
            "impact": Level.MEDIUM,
            "urgency": Level.HIGH,
            "detection_source": DetectionSource.THIRD_PARTY,
            "services": ["email-provider"],
            "summary": "The email provider reports degraded delivery; order confirmations "
            "arrive late.",
            "affected_users": 3200,
        },
        steps=[
            Step(4, "tom", "acknowledge"),
            _role(6, IM, "daniel", actor="daniel"),
            _role(7, TL, "tom", actor="daniel"),
            _role(8, CL, "sam", actor="daniel"),
            Step(9, "tom", "investigate"),
            _note(15, "tom", "Provider status page confirms a queue backlog in their EU region."),
            _note(
                22,
                "daniel",
                "Route order confirmations through the secondary provider until the backlog "
                "clears.",
                decision=True,
            ),
            Step(35, "tom", "mitigate"),
            Step(60, "tom", "monitor"),
            _note(75, "sam", "Support told: confirmations may arrive late; no action needed."),
            Step(
                190,
                "tom",
                "resolve",
                {
                    "resolution": "Switched order confirmations to the secondary provider; the "
                    "primary provider drained its backlog and was re-enabled."
                },
            ),
        ],
    ),
    Story(
        title="Nightly EMEA sales report missing",
        detected=timedelta(hours=5, minutes=12),
        severity=3,
        creator="daniel",
        create={
            "impact": Level.LOW,
            "urgency": Level.MEDIUM,
            "detection_source": DetectionSource.ROUTINE_CHECK,
            "services": ["reporting"],
            "summary": "The EMEA figures are absent from this morning's sales report.",
        },
        steps=[
            _note(3, "julia", "Regional directors asked for the report before the 14:00 call."),
        ],
    ),
    Story(
        title="Product images load slowly in Europe",
        detected=timedelta(hours=2, minutes=35),
        severity=3,
        creator="tom",
        create={
            "impact": Level.MEDIUM,
            "urgency": Level.MEDIUM,
            "detection_source": DetectionSource.THIRD_PARTY,
            "services": ["cdn", "web-app"],
            "summary": "CDN reports degraded performance at two European edge locations.",
        },
        steps=[
            Step(12, "tom", "acknowledge"),
            _role(14, IM, "daniel", actor="daniel"),
            _role(15, TL, "tom", actor="daniel"),
            Step(18, "tom", "investigate"),
            _note(
                30, "tom", "Image p95 load time 4.1 s from Frankfurt and Paris, 0.3 s elsewhere."
            ),
            Step(62, "tom", "mitigate"),
            _note(66, "tom", "EU traffic switched to the secondary CDN."),
            Step(100, "tom", "monitor"),
        ],
    ),
    Story(
        title="Login takes more than 5 seconds for SSO users",
        detected=timedelta(minutes=41),
        severity=2,
        creator=None,
        source=Source.WEBHOOK,
        create={
            "impact": Level.MEDIUM,
            "urgency": Level.HIGH,
            "detection_source": DetectionSource.MONITORING,
            "services": ["auth"],
            "summary": "p95 login time above the 5 s response-time threshold (§7.2).",
        },
        steps=[
            _role(4, IM, "maria"),
            _role(5, TL, "priya"),
            Step(7, "priya", "investigate"),
            _note(
                16,
                "priya",
                "p95 login 7.8 s; the identity provider's token endpoint is slow, our side "
                "is healthy.",
            ),
            _note(
                30,
                "maria",
                "Fail session validation over to the secondary IdP region if there is no "
                "improvement within 30 minutes.",
                decision=True,
            ),
        ],
    ),
    Story(
        title="Card payments fail at checkout with gateway timeouts",
        detected=timedelta(minutes=6),
        severity=1,
        creator=None,
        source=Source.WEBHOOK,
        create={
            "impact": Level.HIGH,
            "urgency": Level.HIGH,
            "detection_source": DetectionSource.MONITORING,
            "services": ["checkout", "web-app"],
            "summary": "Error rate 23 % on the payment gateway calls (threshold 5 %).",
            "impact_started_minutes": -3,
        },
        steps=[_role(1, IM, "maria")],
    ),
    Story(
        title="Customers report they cannot pay",
        detected=timedelta(minutes=4),
        severity=2,
        creator="daniel",
        create={
            "impact": Level.HIGH,
            "urgency": Level.MEDIUM,
            "detection_source": DetectionSource.CUSTOMER_REPORT,
            "services": ["checkout"],
            "summary": "Several customers wrote to support that card payments are declined.",
        },
        steps=[
            Step(
                2,
                "maria",
                "cancel",
                {"duplicate_of": "Card payments fail at checkout with gateway timeouts"},
            ),
        ],
    ),
]
