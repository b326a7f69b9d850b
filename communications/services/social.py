"""Social media for widespread outages (procedure §5.2): a post on the company's Mastodon
account, drafted by Vigil from each status update published about an incident the policy
counts as widespread, approved by the business liaison, then sent through the outbox.

* **Widespread**: the incident's severity is in the policy's ``social_severities`` (Sev 1 by
  default), or its estimated ``affected_users`` is at least ``social_affected_users`` (10,000
  by default; empty: severity alone decides). Decided when the update is published.
* **The draft** (:func:`social_post_draft`, called by ``status_update_publish`` in its own
  transaction): the update's public title and status, its text as plain text (Markdown
  removed), shortened so the whole post, with the status page's address, fits Mastodon's
  500 characters. One post per update at most; Vigil drafts it, nobody is its author yet.
* **Edit** (draft or approved; an approved post goes back to draft, as a status update does)
  needs ``change_socialpost`` (the communications lead, incident managers). **Approve** needs
  ``approve_statusupdate`` (the business liaison), and nobody approves a text they wrote or
  edited themselves. **Send** needs ``publish_statusupdate`` (the communications lead) and an
  approved post: it writes the outbox row (channel ``mastodon``, key ``social:<post id>``) in
  the same transaction, so a post is sent once however often "send" is pressed. **Discard**
  (draft or approved) needs ``change_socialpost``.

A step not possible in the post's state is a 409; a missing permission a 403; an empty or
too long text a 400. Every step is saved with a history record and a timeline entry.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from escalation.outbox import notification_enqueue
from incidents.errors import InvalidInput
from incidents.models import Incident, Kind, MessageChannel, Source
from incidents.services.common import audited_save, timeline_record

from ..errors import require
from ..markdown import markdown_to_text
from ..models import (
    SocialPost,
    SocialPostState,
    StatusPageSettings,
    StatusUpdate,
    UpdateState,
)
from .permissions import CommsForbidden, UpdateStateConflict
from .policy import communication_policy_get

__all__ = [
    "POST_MAX",
    "SOCIAL_RECIPIENT",
    "is_widespread",
    "social_post_approve",
    "social_post_discard",
    "social_post_draft",
    "social_post_edit",
    "social_post_idempotency_key",
    "social_post_list",
    "social_post_send",
    "social_post_text",
    "status_page_url",
]

# Mastodon's default limit of a status's length, in characters.
POST_MAX = 500
# The company has one account; the channel takes its address from settings, not from here.
SOCIAL_RECIPIENT = "company account"
REASON = "Social media for widespread outages (§5.2)"
EDIT_PERMISSION = "communications.change_socialpost"
APPROVE_PERMISSION = "communications.approve_statusupdate"
SEND_PERMISSION = "communications.publish_statusupdate"
EDITED = "edited"
# What each state allows, for the 409's list of allowed actions.
ALLOWED = {
    SocialPostState.DRAFT: ["edit", "approve", "discard"],
    SocialPostState.APPROVED: ["edit", "send", "discard"],
    SocialPostState.SENT: [],
    SocialPostState.DISCARDED: [],
}


# --- reading ---------------------------------------------------------------------------------


def social_post_list(*, incident: Incident) -> QuerySet[SocialPost]:
    """An incident's social posts, oldest first, with their update and people."""
    return (
        SocialPost.objects.filter(incident=incident)
        .select_related("incident", "status_update", "created_by", "approved_by")
        .order_by("created_at", "pk")
    )


def social_post_idempotency_key(post: SocialPost) -> str:
    """The outbox key of a post's one message."""
    return f"social:{post.pk}"


def is_widespread(incident: Incident) -> bool:
    """Whether the policy counts ``incident`` as a widespread outage: its severity is one of
    ``social_severities``, or its estimated affected users reach ``social_affected_users``."""
    policy = communication_policy_get()
    if incident.severity_id in (policy.social_severities or []):
        return True
    threshold = policy.social_affected_users
    return (
        threshold is not None
        and incident.affected_users is not None
        and incident.affected_users >= threshold
    )


def status_page_url() -> str:
    """The public address of the status page: the page settings' URL, else
    ``VIGIL_BASE_URL/status/``."""
    configured = StatusPageSettings.objects.filter(pk=1).values_list("url", flat=True).first()
    return configured or f"{settings.VIGIL_BASE_URL.rstrip('/')}/status/"


def _clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word where there is one, with an ellipsis."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return "…"[:limit]
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-–—") + "…"


def social_post_text(*, update: StatusUpdate, url: str | None = None) -> str:
    """The post for ``update``: "<title> (<status>)", the update's text as plain text, and the
    status page's address, in at most :data:`POST_MAX` characters (the text is shortened)."""
    url = url or status_page_url()
    headline = f"{update.public_title.strip()} ({update.get_public_status_display()})"
    text = " ".join(markdown_to_text(update.body).split())
    # Two blank-line separators between the three parts.
    room = POST_MAX - len(url) - 2
    headline = _clip(headline, max(room, 0))
    room -= len(headline) + 2
    parts = [headline]
    if text and room >= 20:
        parts.append(_clip(text, room))
    parts.append(url)
    return "\n\n".join(parts)[:POST_MAX]


# --- the workflow ----------------------------------------------------------------------------


def _record(post: SocialPost, *, actor: Any, source: str, message: str, **data: Any) -> None:
    timeline_record(
        incident=post.incident,
        kind=Kind.COMMUNICATION,
        source=source,
        actor=actor,
        message=message,
        data={
            "social_post": post.pk,
            "status_update": post.status_update_id,
            "state": post.state,
            **data,
        },
    )


def _locked(post: SocialPost) -> SocialPost:
    return (
        SocialPost.objects.select_for_update(of=("self",))
        .select_related("incident")
        .get(pk=post.pk)
    )


def _conflict(post: SocialPost, action: str, message: str) -> UpdateStateConflict:
    return UpdateStateConflict(
        action=action, state=post.state, allowed=ALLOWED[post.state], message=message
    )


def _checked_body(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput({"body": "The post's text must be a string."})
    body = value.strip()
    if not body:
        raise InvalidInput({"body": "A post needs a text."})
    if len(body) > POST_MAX:
        raise InvalidInput(
            {"body": f"A post is at most {POST_MAX} characters; this one has {len(body)}."}
        )
    return body


@transaction.atomic
def social_post_draft(*, status_update: StatusUpdate) -> SocialPost | None:
    """Draft the social post of a just-published update when its incident is a widespread
    outage (see :func:`is_widespread`); None otherwise, or when the update is not published.
    Called in the publishing transaction by ``status_update_publish``. Idempotent: an update
    has at most one post (a second call returns the first)."""
    if status_update.state != UpdateState.PUBLISHED:
        return None
    existing = SocialPost.objects.filter(status_update=status_update).first()
    if existing is not None:
        return existing
    incident = status_update.incident
    if not is_widespread(incident):
        return None
    post = SocialPost(
        incident=incident,
        status_update=status_update,
        body=social_post_text(update=status_update),
        state=SocialPostState.DRAFT,
    )
    audited_save(post, actor=None, reason="drafted from a published status update")
    _record(
        post,
        actor=None,
        source=Source.SYSTEM,
        message=f"Social media post drafted: from the status update “{status_update.public_title}” "
        "(a widespread outage); the business liaison approves it before it is sent.",
    )
    return post


@transaction.atomic
def social_post_edit(*, post: SocialPost, actor: Any, source: str, body: Any) -> SocialPost:
    """Change a draft's (or an approved post's) text: 1 to 500 characters (400 otherwise).
    Needs ``change_socialpost``. An approved post goes back to draft: the approval covers the
    text that is sent. A sent or discarded post is a 409. Idempotent: the same text changes
    nothing."""
    require(actor, EDIT_PERMISSION, "edit social media posts")
    post = _locked(post)
    if post.state not in (SocialPostState.DRAFT, SocialPostState.APPROVED):
        raise _conflict(
            post,
            "edit",
            f"This post is {post.get_state_display().lower()}: its text can no longer change.",
        )
    text = _checked_body(body)
    if text == post.body:
        return post
    withdrawn = post.state == SocialPostState.APPROVED
    post.body = text
    if withdrawn:
        post.state = SocialPostState.DRAFT
        post.approved_by = None
        post.approved_at = None
    audited_save(post, actor=actor, reason=f"{EDITED} ({source})")
    message = "Social media post edited."
    if withdrawn:
        message += " Its approval is withdrawn: it needs approving again."
    _record(post, actor=actor, source=source, message=message)
    return post


def _wrote(post: SocialPost, actor: Any) -> bool:
    """Whether ``actor`` wrote the post's text: created it or edited it."""
    if post.created_by_id == actor.pk:
        return True
    return post.history.filter(
        history_user_id=actor.pk, history_change_reason__startswith=EDITED
    ).exists()


@transaction.atomic
def social_post_approve(*, post: SocialPost, actor: Any, source: str) -> SocialPost:
    """Approve a draft for sending. Needs ``approve_statusupdate`` (the business liaison), as
    a status update does, and the approver may not have written or edited its text (403). A
    sent or discarded post is a 409. Idempotent: approving an approved post changes
    nothing."""
    require(actor, APPROVE_PERMISSION, "approve social media posts (the business liaison approves)")
    post = _locked(post)
    if post.state == SocialPostState.APPROVED:
        return post
    if post.state != SocialPostState.DRAFT:
        raise _conflict(
            post,
            "approve",
            f"This post is {post.get_state_display().lower()}; there is nothing to approve.",
        )
    if actor is not None and _wrote(post, actor):
        raise CommsForbidden(
            action="approve",
            message="You cannot approve a post you wrote or edited: another business liaison "
            "must approve it.",
        )
    _checked_body(post.body)
    post.state = SocialPostState.APPROVED
    post.approved_by = actor
    post.approved_at = timezone.now()
    audited_save(post, actor=actor, reason=f"approved ({source})")
    _record(post, actor=actor, source=source, message="Social media post approved.")
    return post


@transaction.atomic
def social_post_send(*, post: SocialPost, actor: Any, source: str) -> SocialPost:
    """Send an approved post: writes its outbox row on the Mastodon channel (key
    ``social:<post id>``, the incident set) in this transaction, which the worker delivers after
    commit; the post is then ``sent``. Needs ``publish_statusupdate`` (the communications lead).
    A draft (not approved yet) or discarded post is a 409. Idempotent: sending a sent post
    changes nothing and writes no second row."""
    require(actor, SEND_PERMISSION, "send social media posts")
    post = _locked(post)
    if post.state == SocialPostState.SENT:
        return post
    if post.state == SocialPostState.DRAFT:
        raise _conflict(
            post,
            "send",
            "This post is not approved yet: the business liaison approves it before it is sent.",
        )
    if post.state != SocialPostState.APPROVED:
        raise _conflict(
            post, "send", f"This post is {post.get_state_display().lower()}; it cannot be sent."
        )
    body = _checked_body(post.body)
    incident = post.incident
    notification = notification_enqueue(
        incident=incident,
        channel=MessageChannel.MASTODON,
        recipient=SOCIAL_RECIPIENT,
        subject=f"Social media post: {incident.number}",
        body=body,
        template="social_post",
        reason=REASON,
        idempotency_key=social_post_idempotency_key(post),
        context={"social_post": post.pk},
    )
    post.state = SocialPostState.SENT
    post.sent_at = timezone.now()
    audited_save(post, actor=actor, reason=f"sent ({source})")
    _record(
        post,
        actor=actor,
        source=source,
        message="Social media post sent to the company's Mastodon account.",
        notification=notification.pk,
    )
    return post


@transaction.atomic
def social_post_discard(*, post: SocialPost, actor: Any, source: str) -> SocialPost:
    """Discard a draft or approved post: it will not be sent. Needs ``change_socialpost``. A
    sent post is a 409. Idempotent: discarding a discarded post changes nothing."""
    require(actor, EDIT_PERMISSION, "discard social media posts")
    post = _locked(post)
    if post.state == SocialPostState.DISCARDED:
        return post
    if post.state == SocialPostState.SENT:
        raise _conflict(post, "discard", "This post has been sent; it can no longer be discarded.")
    post.state = SocialPostState.DISCARDED
    audited_save(post, actor=actor, reason=f"discarded ({source})")
    _record(post, actor=actor, source=source, message="Social media post discarded.")
    return post
