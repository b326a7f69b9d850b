"""The knowledge base in the staff API, under /api/v1/ (read-only; articles are written in the
admin):

* ``knowledge-articles/``: list, newest first, cursor-paginated; ``search`` (words, each found
  in the title or the body) and ``service`` (a service slug) filters;
* ``knowledge-articles/{id}/``: one article with its Markdown and its sanitized HTML;
* ``runbook-links/``: the runbook links, by service and position; ``service`` (a slug) filter.

Reading needs the view permission every role group holds. Unknown filter values are a 400.
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from incidents.api.base import VigilAPIView
from incidents.api.errors import READ_ERRORS, error_responses
from incidents.api.pagination import VigilCursorPagination
from incidents.errors import InvalidInput
from incidents.models import Service

from .models import KnowledgeArticle, RunbookLink

_ID = re.compile(r"[0-9]{1,18}")
_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,60}")
TAGS = ["knowledge base"]
SEARCH_MAX = 200


def _when(value) -> str | None:
    return serializers.DateTimeField().to_representation(value) if value else None


class ServiceRefSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()


class KnowledgeArticleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    services = ServiceRefSerializer(many=True)
    incident = serializers.CharField(allow_null=True, help_text="The incident's public ID.")
    review = serializers.IntegerField(allow_null=True, help_text="The review it comes from.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def to_representation(self, row: KnowledgeArticle) -> dict[str, Any]:
        return {
            "id": row.pk,
            "title": row.title,
            "services": [{"slug": s.slug, "name": s.name} for s in row.services.all()],
            "incident": row.incident.number if row.incident_id else None,
            "review": row.review_id,
            "created_at": _when(row.created_at),
            "updated_at": _when(row.updated_at),
        }


class KnowledgeArticleDetailSerializer(KnowledgeArticleSerializer):
    body = serializers.CharField(help_text="Markdown.")
    body_html = serializers.CharField(help_text="The body as sanitized HTML.")

    def to_representation(self, row: KnowledgeArticle) -> dict[str, Any]:
        return {
            **super().to_representation(row),
            "body": row.body,
            "body_html": row.body_html,
        }


class RunbookLinkSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    service = ServiceRefSerializer()
    title = serializers.CharField()
    url = serializers.CharField()
    position = serializers.IntegerField()

    def to_representation(self, row: RunbookLink) -> dict[str, Any]:
        return {
            "id": row.pk,
            "service": {"slug": row.service.slug, "name": row.service.name},
            "title": row.title,
            "url": row.url,
            "position": row.position,
        }


class Pagination(VigilCursorPagination):
    ordering = ("-created_at", "-id")


def _service(request: Request) -> Service | None:
    slug = request.query_params.get("service")
    if slug is None:
        return None
    service = Service.objects.filter(slug=slug).first() if _SLUG.fullmatch(slug) else None
    if service is None:
        raise InvalidInput({"service": "No service with this slug."})
    return service


def _articles() -> QuerySet:
    return KnowledgeArticle.objects.select_related("incident").prefetch_related("services")


SERVICE_PARAMETER = OpenApiParameter(
    "service", OpenApiTypes.STR, OpenApiParameter.QUERY, description="A service slug."
)


class KnowledgeArticleListView(VigilAPIView, GenericAPIView):
    permission_model = KnowledgeArticle
    queryset = KnowledgeArticle.objects.none()  # names the model for the schema generator
    serializer_class = KnowledgeArticleSerializer
    pagination_class = Pagination
    filter_backends: list = []

    @extend_schema(
        tags=TAGS,
        operation_id="knowledge_articles_list",
        summary="List knowledge-base articles",
        description="Newest first, cursor-paginated.",
        parameters=[
            OpenApiParameter(
                "search",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="Words, each found in the title or the body (any case).",
            ),
            SERVICE_PARAMETER,
        ],
        responses={200: KnowledgeArticleSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        rows = _articles()
        service = _service(request)
        if service is not None:
            rows = rows.filter(services=service)
        search = request.query_params.get("search")
        if search is not None:
            if len(search) > SEARCH_MAX:
                raise InvalidInput({"search": f"At most {SEARCH_MAX} characters."})
            for word in search.split():
                rows = rows.filter(Q(title__icontains=word) | Q(body__icontains=word))
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(KnowledgeArticleSerializer(page, many=True).data)


class KnowledgeArticleDetailView(VigilAPIView):
    permission_model = KnowledgeArticle

    @extend_schema(
        tags=TAGS,
        operation_id="knowledge_articles_retrieve",
        summary="Read a knowledge-base article",
        parameters=[
            OpenApiParameter(
                "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The article's id."
            )
        ],
        responses={200: KnowledgeArticleDetailSerializer, **error_responses(*READ_ERRORS, 404)},
    )
    def get(self, request: Request, id: str) -> Response:
        row = _articles().filter(pk=int(id)).first() if _ID.fullmatch(str(id)) else None
        if row is None:
            raise Http404
        return Response(KnowledgeArticleDetailSerializer(row).data)


class RunbookLinkListView(VigilAPIView):
    permission_model = RunbookLink
    queryset = RunbookLink.objects.none()  # names the model for the schema generator

    @extend_schema(
        tags=TAGS,
        operation_id="runbook_links_list",
        summary="List runbook links",
        description="By service and position (not paginated: a handful per service).",
        parameters=[SERVICE_PARAMETER],
        responses={200: RunbookLinkSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        rows = RunbookLink.objects.select_related("service").order_by(
            "service__name", "position", "id"
        )
        service = _service(request)
        if service is not None:
            rows = rows.filter(service=service)
        return Response(RunbookLinkSerializer(rows, many=True).data)


urlpatterns = [
    path(
        "knowledge-articles/",
        KnowledgeArticleListView.as_view(),
        name="knowledge-article-list",
    ),
    path(
        "knowledge-articles/<str:id>/",
        KnowledgeArticleDetailView.as_view(),
        name="knowledge-article-detail",
    ),
    path("runbook-links/", RunbookLinkListView.as_view(), name="runbook-link-list"),
]
