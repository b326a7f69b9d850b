"""The customer satisfaction survey (§9.1: customer satisfaction 4.0/5.0, post-incident survey).

**Who and when.** :func:`survey_send` runs when a customer-facing incident resolves (the
``kpis.survey`` handler) while the KPI policy's ``survey_enabled`` is on. It invites every
affected customer contact: the contacts receiving incident email of the customers using one of
the incident's services, suppressed addresses left out
(``communications.selectors.incident_customer_contacts``). One :class:`SurveyInvitation` per
incident and lower-cased address, so a reopen and a second resolution invite nobody twice (only
a contact added since gets one), and no rating is counted twice.

**The e-mail** goes through the outbox only (idempotency key ``survey:<invitation id>``): text
and HTML, the incident's public wording (the title of its last published status update, else
its services' public names; never the internal title or summary), five one-click rating links
and the list headers of customer email (``List-Unsubscribe`` is the contact's opt-out from
incident email).

**The links** carry a token signed with ``SECRET_KEY`` (``django.core.signing``, a salt per
action: ``rate``, ``comment``) naming the invitation and its ``token_version``; they work until
``expires_at`` (sent + the policy's ``survey_expiry_days``):

* :func:`survey_rate` records the clicked score at once; another score clicked through the same
  e-mail replaces it (a mail scanner that opens every link leaves one rating, not five);
* :func:`survey_comment` takes the comment page (a score and an optional comment) and finalises
  the answer: ``token_version`` goes up, and every link of that e-mail is then used;
* a tampered link (:class:`SurveyLinkInvalid` ``invalid``), an expired or a used one
  (``expired``, ``used``) changes nothing; a score outside 1-5 or a comment too long is
  :class:`~incidents.errors.InvalidInput` and changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models.functions import Lower
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from communications.models import StatusUpdate, UpdateState
from communications.selectors import incident_customer_contacts
from communications.services.links import contact_optout_url
from communications.services.mailing import PageInfo, page_info, thread_root
from communications.services.updates import TITLE_PROMPT
from escalation.outbox import OutboxMessage, notification_enqueue_many
from incidents.errors import InvalidInput
from incidents.models import Incident, MessageChannel, Status

from ..models import KpiPolicy, SurveyInvitation
from .rollups import kpi_months_mark_stale, month_of

logger = logging.getLogger(__name__)

__all__ = [
    "COMMENT_MAX",
    "RATINGS",
    "SurveyLinkInvalid",
    "survey_comment",
    "survey_open",
    "survey_policy",
    "survey_public_title",
    "survey_rate",
    "survey_send",
    "survey_token",
    "survey_url",
]

SALT = "vigil.kpis.survey."
ACTIONS = ("rate", "comment")
COMMENT_MAX = 2000
RATINGS = {
    1: "Very dissatisfied",
    2: "Dissatisfied",
    3: "Neither satisfied nor dissatisfied",
    4: "Satisfied",
    5: "Very satisfied",
}
# Rendered once per mailing with these in place of each recipient's own links.
TOKEN_PLACEHOLDER = "vigil-survey-token-placeholder"
OPTOUT_PLACEHOLDER = "https://vigil-placeholder.invalid/survey-optout"


class SurveyLinkInvalid(Exception):
    """A survey link that cannot be used: ``reason`` is ``invalid`` (tampered, incomplete, for
    another action or an invitation that no longer exists), ``expired`` or ``used`` (the answer
    was sent). ``invitation`` is set for expired and used links."""

    def __init__(self, reason: str, *, invitation: SurveyInvitation | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.invitation = invitation


def survey_policy() -> KpiPolicy:
    """The KPI policy row (seeded; its defaults if it is missing)."""
    return KpiPolicy.objects.filter(pk=1).first() or KpiPolicy(pk=1)


# --- links --------------------------------------------------------------------------------------


def survey_token(invitation: SurveyInvitation, action: str) -> str:
    if action not in ACTIONS:
        raise ValueError(f"Unknown survey link action {action!r}.")
    return signing.dumps(
        {"i": invitation.pk, "v": invitation.token_version}, salt=SALT + action, compress=True
    )


def _base() -> str:
    return settings.VIGIL_BASE_URL.rstrip("/")


def survey_url(invitation: SurveyInvitation, action: str, *, rating: int | None = None) -> str:
    """The absolute URL of an invitation's rating link (``rate``, with ``rating``) or of its
    comment page (``comment``)."""
    token = survey_token(invitation, action)
    if action == "rate":
        return _base() + reverse("survey:rate", args=[token, rating])
    return _base() + reverse("survey:comment", args=[token])


def _loads(token: str, action: str) -> dict[str, Any]:
    if action not in ACTIONS:
        raise SurveyLinkInvalid("invalid")
    try:
        data = signing.loads(token, salt=SALT + action)
    except signing.BadSignature as exc:
        raise SurveyLinkInvalid("invalid") from exc
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("i"), int)
        or not isinstance(data.get("v"), int)
    ):
        raise SurveyLinkInvalid("invalid")
    return data


def _check(invitation: SurveyInvitation | None, data: dict[str, Any], now: datetime) -> None:
    if invitation is None:
        raise SurveyLinkInvalid("invalid")
    if invitation.token_version != data["v"] or invitation.finalized_at is not None:
        raise SurveyLinkInvalid("used", invitation=invitation)
    if now >= invitation.expires_at:
        raise SurveyLinkInvalid("expired", invitation=invitation)


def survey_open(*, token: str, action: str) -> SurveyInvitation:
    """The invitation a link is for, or :class:`SurveyLinkInvalid`. Changes nothing."""
    data = _loads(token, action)
    invitation = SurveyInvitation.objects.select_related("incident").filter(pk=data["i"]).first()
    _check(invitation, data, timezone.now())
    return invitation


def _month_stale(invitation: SurveyInvitation) -> None:
    """The stored rollups of the incident's month no longer hold its satisfaction figure."""
    kpi_months_mark_stale(months={month_of(invitation.incident.detected_at)})


def _rating(value: Any) -> int:
    try:
        rating = int(str(value).strip())
    except (TypeError, ValueError):
        rating = 0
    if rating not in RATINGS:
        raise InvalidInput({"rating": "Choose a score from 1 to 5."})
    return rating


def _locked(token: str, action: str) -> SurveyInvitation:
    data = _loads(token, action)
    # Only the invitation's row is locked (PostgreSQL would lock the joined incident's too).
    invitation = (
        SurveyInvitation.objects.select_for_update(of=("self",))
        .select_related("incident")
        .filter(pk=data["i"])
        .first()
    )
    _check(invitation, data, timezone.now())
    return invitation


def survey_rate(*, token: str, rating: Any) -> SurveyInvitation:
    """Record ``rating`` (1-5) for the invitation of a ``rate`` link: the first click rates,
    another score clicked before the answer is finalised replaces it (one rating per
    invitation, whatever is clicked). Idempotent: the same score again changes nothing.
    Raises :class:`SurveyLinkInvalid` (nothing changed) or ``InvalidInput`` (not 1-5)."""
    score = _rating(rating)
    with transaction.atomic():
        invitation = _locked(token, "rate")
        if invitation.rating != score:
            invitation.rating = score
            invitation.rated_at = timezone.now()
            invitation.save(update_fields=["rating", "rated_at"])
            _month_stale(invitation)
    return invitation


def _comment(value: Any) -> str:
    text = str(value or "").replace("\r\n", "\n").replace("\r", "\n")
    # Stored and shown as plain text; NUL is refused by PostgreSQL's text columns.
    text = "".join(ch for ch in text if ch in "\n\t" or (ch >= " " and ch != "\x7f")).strip()
    if len(text) > COMMENT_MAX:
        raise InvalidInput({"comment": f"At most {COMMENT_MAX} characters, please."})
    return text


def survey_comment(*, token: str, rating: Any, comment: Any = "") -> SurveyInvitation:
    """Finalise the answer of the invitation of a ``comment`` link with ``rating`` (1-5, it
    may change the clicked one) and an optional plain-text ``comment``: ``token_version`` goes
    up, so this e-mail's links are used from now on. Raises :class:`SurveyLinkInvalid` or
    ``InvalidInput``, and then changes nothing."""
    score = _rating(rating)
    text = _comment(comment)
    with transaction.atomic():
        invitation = _locked(token, "comment")
        now = timezone.now()
        if invitation.rating != score or invitation.rated_at is None:
            invitation.rated_at = now
        invitation.rating = score
        invitation.comment = text
        invitation.finalized_at = now
        invitation.token_version += 1
        invitation.save(
            update_fields=["rating", "rated_at", "comment", "finalized_at", "token_version"]
        )
        _month_stale(invitation)
    return invitation


# --- sending ------------------------------------------------------------------------------------


def survey_public_title(*, incident: Incident) -> str:
    """What customers were told the incident was: the title of its last published status
    update, else the public names of its services. Never its internal title or summary."""
    title = (
        StatusUpdate.objects.filter(incident=incident, state=UpdateState.PUBLISHED)
        .exclude(public_title=TITLE_PROMPT)
        .exclude(public_title="")
        .order_by("-published_at", "-pk")
        .values_list("public_title", flat=True)
        .first()
    )
    if title:
        return title.strip()
    names = sorted(
        {
            (service.public_name or "").strip()
            for service in incident.services.all()
            if (service.public_name or "").strip()
        }
    )
    if not names:
        return "Service disruption"
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"Service disruption: {joined}"


@dataclass
class _Mailing:
    subject: str
    text: str
    html: str
    headers: dict[str, str]


def _when(value: datetime | None, page: PageInfo) -> str:
    if value is None:
        return ""
    local = value.astimezone(page.zone)
    return f"{local:%-d %B %Y}"


def _mailing(incident: Incident, *, page: PageInfo, expires_at: datetime) -> _Mailing:
    title = survey_public_title(incident=incident)
    context = {
        "page_name": page.name,
        "page_url": page.url,
        "number": incident.number,
        "title": title,
        "resolved_on": _when(incident.resolved_at, page),
        "expires_on": _when(expires_at, page),
        "ratings": [
            (n, label, _base() + reverse("survey:rate", args=[TOKEN_PLACEHOLDER, n]))
            for n, label in RATINGS.items()
        ],
        "optout_url": OPTOUT_PLACEHOLDER,
    }
    subject = " ".join(f"[{page.name}] How did we do? {title} ({incident.number})".split())
    headers = {
        "Auto-Submitted": "auto-generated",
        "X-Auto-Response-Suppress": "OOF, AutoReply",
        "List-Id": f'"{_header_name(page.name)}" <survey.{page.host}>',
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        # The survey belongs to the incident's conversation in the customer's mail client.
        "In-Reply-To": thread_root(incident_id=incident.pk),
        "References": thread_root(incident_id=incident.pk),
    }
    reply_to = getattr(settings, "VIGIL_CUSTOMER_EMAIL_REPLY_TO", "")
    if reply_to:
        headers["Reply-To"] = reply_to
    return _Mailing(
        subject=subject[:250],
        text=render_to_string("kpis/email/survey.txt", context),
        html=render_to_string("kpis/email/survey.html", context),
        headers=headers,
    )


def _header_name(name: str) -> str:
    return "".join(ch for ch in name if ch not in '<>"\\\r\n').strip() or "Status"


def _message(mailing: _Mailing, invitation: SurveyInvitation) -> OutboxMessage:
    token = survey_token(invitation, "rate")
    optout = contact_optout_url(invitation.contact)
    headers = dict(mailing.headers)
    targets = [f"<{optout}>"]
    mailto = getattr(settings, "VIGIL_EMAIL_UNSUBSCRIBE_MAILTO", "")
    if mailto:
        targets.append(f"<mailto:{mailto}?subject=unsubscribe>")
    headers["List-Unsubscribe"] = ", ".join(targets)
    # A signed token is URL-safe base64 and colons: nothing in it for HTML to escape.
    text = mailing.text.replace(TOKEN_PLACEHOLDER, token).replace(OPTOUT_PLACEHOLDER, optout)
    html = mailing.html.replace(TOKEN_PLACEHOLDER, token).replace(
        OPTOUT_PLACEHOLDER, escape(optout)
    )
    return OutboxMessage(
        channel=MessageChannel.EMAIL,
        recipient=invitation.email,
        subject=mailing.subject,
        body=text,
        template="kpis_survey_email",
        reason=f"Satisfaction survey of {invitation.incident.number}",
        idempotency_key=f"survey:{invitation.pk}",
        incident=invitation.incident,
        context={"html": html, "headers": headers},
    )


def _valid(address: str) -> bool:
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


def survey_send(*, incident: Incident) -> int:
    """Invite the affected customer contacts of a resolved, customer-facing ``incident`` (see
    the module docstring) and queue their e-mails in the outbox, in one transaction. Returns
    how many invitations were new. Nothing when the survey is off, the incident is not
    customer-facing, or no longer resolved (reopened before this ran: its next resolution
    invites). Idempotent: an address invited to this incident before is not invited again."""
    policy = survey_policy()
    if not policy.survey_enabled:
        return 0
    incident = Incident.objects.get(pk=incident.pk)
    if (
        not incident.customer_facing
        or incident.status not in (Status.RESOLVED, Status.CLOSED)
        or incident.duplicate_of_id is not None
    ):
        return 0
    with transaction.atomic():
        invited = set(
            SurveyInvitation.objects.filter(incident=incident)
            .annotate(address=Lower("email"))
            .values_list("address", flat=True)
        )
        now = timezone.now()
        expires_at = now + timedelta(days=policy.survey_expiry_days)
        new: dict[str, SurveyInvitation] = {}
        for contact in incident_customer_contacts(incident=incident):
            address = (contact.email or "").strip()
            key = address.lower()
            if not key or key in invited or key in new:
                continue
            if not _valid(address):
                logger.warning("Survey of %s: %r is not an address", incident.number, address)
                continue
            new[key] = SurveyInvitation(
                incident=incident,
                email=address,
                name=contact.name[:200],
                customer_name=contact.customer.name[:200],
                contact=contact,
                sent_at=now,
                expires_at=expires_at,
            )
        if not new:
            return 0
        # A concurrent run for the same incident may have invited some of them: theirs stand,
        # and the outbox's key (the invitation's id) makes a second e-mail impossible.
        SurveyInvitation.objects.bulk_create(new.values(), ignore_conflicts=True)
        rows = list(
            SurveyInvitation.objects.filter(incident=incident)
            .annotate(address=Lower("email"))
            .filter(address__in=list(new))
            .select_related("incident", "contact")
            .order_by("pk")
        )
        mailing = _mailing(incident, page=page_info(), expires_at=expires_at)
        # A contact deleted meanwhile has no opt-out link to offer: no e-mail without one.
        notification_enqueue_many([_message(mailing, row) for row in rows if row.contact_id])
        # New invitations without a rating are the satisfaction KPI's "not measurable" count.
        kpi_months_mark_stale(months={month_of(incident.detected_at)})
    logger.info("Survey of %s: %s contact(s) invited", incident.number, len(rows))
    return len(rows)
