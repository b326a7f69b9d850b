"""The knowledge base (§4.2 step 4 "update knowledge base", §8.3): articles (Markdown, sanitized
by the core's renderer, ``incidents.markdown``: raw HTML shown as text, an allowlist of tags,
http(s) and mailto links only) linked to the services they concern, and each service's runbook
links.

* A published review's lessons become an article (:func:`knowledge_article_from_review`, called
  by the publishing service): one article per review, never rewritten afterwards (staff may
  have edited it).
* Staff with ``reviews.add_knowledgearticle`` / ``change_knowledgearticle`` write and edit
  articles; ``reviews.add_runbooklink`` / ``change_runbooklink`` / ``delete_runbooklink`` keep
  the runbook links. Every write is kept in the row's history with who and why.
* Bad input (an empty title or body, an over-long one, a link that is not http(s)) is an
  ``InvalidInput`` (400) and nothing is written; a missing permission an ``ActionForbidden``
  (403).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import QuerySet

from incidents.errors import ActionForbidden, InvalidInput
from incidents.markdown import markdown_to_html
from incidents.models import Incident, Service
from incidents.services.common import audited_delete, audited_save

from ..models import KnowledgeArticle, Review, RunbookLink

__all__ = [
    "knowledge_article_create",
    "knowledge_article_from_review",
    "knowledge_article_update",
    "knowledge_articles_for_services",
    "runbook_link_create",
    "runbook_link_delete",
    "runbook_link_update",
    "runbook_links_for_services",
]

TITLE_MAX = 200
BODY_MAX = 50_000
URL_MAX = 500
_URL = URLValidator(schemes=["http", "https"])


def _require(actor: Any, perm: str, what: str) -> None:
    if actor is None:
        return
    if not (actor.is_active and actor.has_perm(perm)):
        raise ActionForbidden(f"You may not {what}.")


def _text(value: Any, name: str, *, limit: int, errors: dict[str, str]) -> str:
    text = str(value or "").strip()
    if not text:
        errors[name] = "Required."
    elif len(text) > limit:
        errors[name] = f"At most {limit} characters."
    return text


def _services(value: Iterable[Any] | None) -> list[Service]:
    services = list(value or [])
    for service in services:
        if not isinstance(service, Service) or service.pk is None:
            raise InvalidInput({"services": "Known services only."})
    return services


# --- articles -----------------------------------------------------------------------------------


def _article_body_from_review(review: Review) -> str:
    incident = review.incident
    parts = [
        f"Lessons from the post-incident review of {incident.number} (Sev {incident.severity_id})."
    ]
    lessons = review.lessons_learned.strip() or incident.lessons_learned.strip()
    parts += ["## Lessons learned", lessons or "None recorded."]
    cause = review.primary_cause.strip() or incident.root_cause.strip()
    parts += ["## Root cause", cause or "Not recorded."]
    if review.contributing_factors.strip():
        parts += ["### Contributing factors", review.contributing_factors.strip()]
    if review.systemic_issues.strip():
        parts += ["### Systemic issues", review.systemic_issues.strip()]
    return "\n\n".join(parts) + "\n"


@transaction.atomic
def knowledge_article_from_review(*, review: Review, actor: Any) -> KnowledgeArticle:
    """The knowledge-base article of a published review: titled after the incident, its body the
    review's lessons learned and root cause (the incident's own when the review leaves them
    empty), linked to the incident's services. Called by the publishing service in its
    transaction; no permission of its own (publishing is the permission). Idempotent: a review
    has one article, returned unchanged once it exists (edits made to it are kept)."""
    review = Review.objects.select_related("incident").get(pk=review.pk)
    existing = KnowledgeArticle.objects.filter(review=review).first()
    if existing is not None:
        return existing
    incident = review.incident
    article = KnowledgeArticle(
        title=f"{incident.number}: {incident.title}"[:TITLE_MAX],
        body=_article_body_from_review(review),
        incident=incident,
        review=review,
        created_by=actor,
    )
    article.body_html = markdown_to_html(article.body)
    audited_save(article, actor=actor, reason=f"from the published review of {incident.number}")
    article.services.set(incident.services.all())
    return article


@transaction.atomic
def knowledge_article_create(
    *,
    actor: Any,
    title: str,
    body: str,
    services: Iterable[Service] | None = None,
    incident: Incident | None = None,
) -> KnowledgeArticle:
    """Write a knowledge-base article (``reviews.add_knowledgearticle``): Markdown, stored with
    its sanitized HTML, linked to ``services``. Not idempotent: each call adds an article."""
    _require(actor, "reviews.add_knowledgearticle", "write knowledge-base articles")
    errors: dict[str, str] = {}
    title = _text(title, "title", limit=TITLE_MAX, errors=errors)
    body = _text(body, "body", limit=BODY_MAX, errors=errors)
    if errors:
        raise InvalidInput(errors)
    chosen = _services(services)
    article = KnowledgeArticle(
        title=title,
        body=body,
        body_html=markdown_to_html(body),
        incident=incident,
        created_by=actor,
    )
    audited_save(article, actor=actor, reason="written")
    article.services.set(chosen)
    return article


@transaction.atomic
def knowledge_article_update(
    *, article: KnowledgeArticle, actor: Any, **changes: Any
) -> KnowledgeArticle:
    """Edit an article's ``title``, ``body`` and/or ``services``
    (``reviews.change_knowledgearticle``); the HTML is rendered again from the new body.
    Idempotent: unchanged values write nothing."""
    _require(actor, "reviews.change_knowledgearticle", "edit knowledge-base articles")
    unknown = sorted(set(changes) - {"title", "body", "services"})
    if unknown:
        raise InvalidInput({name: "Not a field of an article." for name in unknown})
    locked = KnowledgeArticle.objects.select_for_update().get(pk=article.pk)
    errors: dict[str, str] = {}
    fields: dict[str, str] = {}
    if "title" in changes:
        fields["title"] = _text(changes["title"], "title", limit=TITLE_MAX, errors=errors)
    if "body" in changes:
        fields["body"] = _text(changes["body"], "body", limit=BODY_MAX, errors=errors)
    if errors:
        raise InvalidInput(errors)
    services = _services(changes["services"]) if "services" in changes else None
    changed = [name for name, value in fields.items() if getattr(locked, name) != value]
    if changed:
        for name in changed:
            setattr(locked, name, fields[name])
        locked.body_html = markdown_to_html(locked.body)
        audited_save(locked, actor=actor, reason=f"edited: {', '.join(changed)}")
    if services is not None and {s.pk for s in services} != set(
        locked.services.values_list("pk", flat=True)
    ):
        locked.services.set(services)
    return locked


def knowledge_articles_for_services(*, service_ids: Iterable[int], limit: int = 5) -> QuerySet:
    """The most recent articles linked to any of ``service_ids``, newest first."""
    return (
        KnowledgeArticle.objects.filter(services__in=list(service_ids))
        .distinct()
        .order_by("-created_at", "-id")[:limit]
    )


# --- runbook links ------------------------------------------------------------------------------


def _link_fields(title: Any, url: Any, position: Any, errors: dict[str, str]) -> dict[str, Any]:
    fields = {"title": _text(title, "title", limit=TITLE_MAX, errors=errors)}
    url = str(url or "").strip()
    if len(url) > URL_MAX:
        errors["url"] = f"At most {URL_MAX} characters."
    else:
        try:
            _URL(url)
        except ValidationError:
            errors["url"] = "An http(s) address."
    fields["url"] = url
    try:
        fields["position"] = int(position)
        if fields["position"] < 0:
            raise ValueError
    except (TypeError, ValueError):
        errors["position"] = "A whole number, 0 or more."
    return fields


@transaction.atomic
def runbook_link_create(
    *, actor: Any, service: Service, title: str, url: str, position: int = 0
) -> RunbookLink:
    """Add a runbook link to ``service`` (``reviews.add_runbooklink``): an http(s) address, shown
    by ``position`` on its incidents' pages."""
    _require(actor, "reviews.add_runbooklink", "add runbook links")
    errors: dict[str, str] = {}
    if not isinstance(service, Service) or service.pk is None:
        errors["service"] = "A known service."
    fields = _link_fields(title, url, position, errors)
    if errors:
        raise InvalidInput(errors)
    link = RunbookLink(service=service, **fields)
    audited_save(link, actor=actor, reason="added")
    return link


@transaction.atomic
def runbook_link_update(*, link: RunbookLink, actor: Any, **changes: Any) -> RunbookLink:
    """Change a runbook link's ``title``, ``url``, ``position`` or ``service``
    (``reviews.change_runbooklink``). Idempotent: unchanged values write nothing."""
    _require(actor, "reviews.change_runbooklink", "change runbook links")
    unknown = sorted(set(changes) - {"title", "url", "position", "service"})
    if unknown:
        raise InvalidInput({name: "Not a field of a runbook link." for name in unknown})
    locked = RunbookLink.objects.select_for_update().get(pk=link.pk)
    errors: dict[str, str] = {}
    fields = _link_fields(
        changes.get("title", locked.title),
        changes.get("url", locked.url),
        changes.get("position", locked.position),
        errors,
    )
    service = changes.get("service", locked.service)
    if not isinstance(service, Service) or service.pk is None:
        errors["service"] = "A known service."
    if errors:
        raise InvalidInput(errors)
    fields["service_id"] = service.pk
    changed = [name for name, value in fields.items() if getattr(locked, name) != value]
    if changed:
        for name in changed:
            setattr(locked, name, fields[name])
        audited_save(locked, actor=actor, reason=f"changed: {', '.join(changed)}")
    return locked


@transaction.atomic
def runbook_link_delete(*, link: RunbookLink, actor: Any) -> None:
    """Remove a runbook link (``reviews.delete_runbooklink``); its history keeps it."""
    _require(actor, "reviews.delete_runbooklink", "delete runbook links")
    audited_delete(link, actor=actor, reason="deleted")


def runbook_links_for_services(*, service_ids: Iterable[int]) -> QuerySet:
    """The runbook links of ``service_ids``, by service and position."""
    return (
        RunbookLink.objects.filter(service_id__in=list(service_ids))
        .select_related("service")
        .order_by("service__name", "position", "id")
    )
