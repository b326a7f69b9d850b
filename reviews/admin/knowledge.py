"""The knowledge base in the admin: articles (searchable by title and body, filtered by service,
written and edited through ``reviews.services.knowledge``, their sanitized HTML previewed),
runbook links per service, and a panel on the incident page with the runbooks and the recent
articles of the incident's services (through the core's extension point)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from simple_history.admin import SimpleHistoryAdmin

from incidents.admin.common import NoRevertMixin, ServiceWriteAdminMixin, WriteServices
from incidents.admin.extensions import incident_page_panel_register
from incidents.models import Incident
from incidents.timeformat import when

from ..models import KnowledgeArticle, RunbookLink
from ..services.knowledge import (
    knowledge_article_create,
    knowledge_article_update,
    knowledge_articles_for_services,
    runbook_link_create,
    runbook_link_delete,
    runbook_link_update,
    runbook_links_for_services,
)


def _article_create(*, actor: Any, source: str, **fields: Any) -> KnowledgeArticle:
    return knowledge_article_create(actor=actor, **fields)


def _article_update(*, article: KnowledgeArticle, actor: Any, source: str, **changes: Any):
    return knowledge_article_update(article=article, actor=actor, **changes)


@admin.register(KnowledgeArticle)
class KnowledgeArticleAdmin(NoRevertMixin, ServiceWriteAdminMixin, SimpleHistoryAdmin):
    write_services = WriteServices(
        instance="article", create=_article_create, update=_article_update
    )
    fields = ("title", "body", "services", "preview", "incident_link", "review", "created_by")
    readonly_fields = ("preview", "incident_link", "review", "created_by")
    filter_horizontal = ("services",)
    list_display = ("title", "service_names", "incident_link", "created_at", "updated_at")
    list_filter = ("services",)
    search_fields = ("title", "body")
    date_hierarchy = "created_at"

    def get_queryset(self, request: HttpRequest):
        return (
            super()
            .get_queryset(request)
            .select_related("incident", "review", "created_by")
            .prefetch_related("services")
        )

    @admin.display(description="Services")
    def service_names(self, obj: KnowledgeArticle) -> str:
        return ", ".join(service.name for service in obj.services.all()) or "–"

    @admin.display(description="Incident")
    def incident_link(self, obj: KnowledgeArticle) -> Any:
        if obj.incident_id is None:
            return "–"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:incidents_incident_change", args=[obj.incident_id]),
            obj.incident.number,
        )

    @admin.display(description="Preview")
    def preview(self, obj: KnowledgeArticle) -> Any:
        # body_html is the core renderer's sanitized output (nh3 allowlist), stored on save.
        if not obj.pk:
            return "Shown once saved."
        return format_html('<div class="vigil-article">{}</div>', mark_safe(obj.body_html))


def _link_create(*, actor: Any, source: str, **fields: Any) -> RunbookLink:
    return runbook_link_create(actor=actor, **fields)


def _link_update(*, link: RunbookLink, actor: Any, source: str, **changes: Any) -> RunbookLink:
    return runbook_link_update(link=link, actor=actor, **changes)


def _link_delete(*, link: RunbookLink, actor: Any, source: str) -> None:
    runbook_link_delete(link=link, actor=actor)


@admin.register(RunbookLink)
class RunbookLinkAdmin(NoRevertMixin, ServiceWriteAdminMixin, SimpleHistoryAdmin):
    write_services = WriteServices(
        instance="link", create=_link_create, update=_link_update, delete=_link_delete
    )
    fields = ("service", "title", "url", "position")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("title", "service", "link", "position")
    list_filter = ("service",)
    search_fields = ("title", "url", "service__name")
    list_select_related = ("service",)
    ordering = ("service__name", "position", "id")

    @admin.display(description="Address")
    def link(self, obj: RunbookLink) -> Any:
        return format_html('<a href="{}" rel="noopener noreferrer">{}</a>', obj.url, obj.url)


# --- the incident page ------------------------------------------------------------------------

PERMISSION = "reviews.view_knowledgearticle"


def incident_panel(*, request: HttpRequest, incident: Incident) -> Any:
    service_ids = list(incident.services.values_list("pk", flat=True))
    if not service_ids:
        return format_html(
            '<p class="vigil-muted">{}</p>',
            "No services recorded on this incident: no runbooks or articles to show.",
        )
    links = list(runbook_links_for_services(service_ids=service_ids))
    articles = list(knowledge_articles_for_services(service_ids=service_ids))
    runbooks = (
        format_html(
            '<ul class="vigil-runbooks">{}</ul>',
            format_html_join(
                "",
                '<li>{}: <a href="{}" rel="noopener noreferrer" target="_blank">{}</a></li>',
                ((link.service.name, link.url, link.title) for link in links),
            ),
        )
        if links
        else format_html('<p class="vigil-muted">{}</p>', "No runbook links for these services.")
    )
    recent = (
        format_html(
            '<ul class="vigil-articles">{}</ul>',
            format_html_join(
                "",
                '<li><a href="{}">{}</a> <span class="vigil-muted">{}</span></li>',
                (
                    (
                        reverse("admin:reviews_knowledgearticle_change", args=[article.pk]),
                        article.title,
                        when(article.created_at),
                    )
                    for article in articles
                ),
            ),
        )
        if articles
        else format_html('<p class="vigil-muted">{}</p>', "No articles for these services yet.")
    )
    return format_html("<h3>Runbooks</h3>{}<h3>Recent articles</h3>{}", runbooks, recent)


incident_page_panel_register(
    key="knowledge",
    title="Runbooks and knowledge base",
    render=incident_panel,
    permission=PERMISSION,
)
