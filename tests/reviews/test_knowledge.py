"""The knowledge base (§4.2 step 4, §8.3): a published review's lessons become one article linked
to the incident's services; staff write and edit articles (Markdown, sanitized) and keep each
service's runbook links; the incident page shows the runbooks and recent articles of its
services; the admin searches articles and the API lists them."""

from __future__ import annotations

from datetime import date

import pytest
from django.urls import reverse

from incidents.models import Source
from incidents.services import incident_update
from reviews.models import KnowledgeArticle, Review, ReviewStatus, RunbookLink
from reviews.services.knowledge import knowledge_article_from_review, knowledge_article_update
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db

XSS = (
    "Watch the pool.\n\n<script>alert(1)</script>\n\n"
    '<img src=x onerror="alert(2)">\n\n[click](javascript:alert(3)) and [docs](https://ex.com/a)'
)


@pytest.fixture
def checkout(service):
    return service


@pytest.fixture
def payments(db):
    return ServiceFactory(slug="payments", name="Payments")


@pytest.fixture
def published(make_incident, checkout, payments):
    incident = make_incident(
        status="closed", severity=1, title="Checkout down", services=[checkout, payments]
    )
    return Review.objects.create(
        incident=incident,
        status=ReviewStatus.PUBLISHED,
        due_date=date(2026, 3, 9),
        lessons_learned="Alert on pool saturation.",
        primary_cause="A pool limit lowered by release 42.",
        contributing_factors="No canary.",
    )


# --- from a published review --------------------------------------------------------------------


def test_a_published_review_becomes_one_article_linked_to_its_services(
    published, incident_manager, checkout, payments
):
    article = knowledge_article_from_review(review=published, actor=incident_manager)

    incident = published.incident
    assert article.title == f"{incident.number}: Checkout down"
    assert "## Lessons learned\n\nAlert on pool saturation." in article.body
    assert "## Root cause\n\nA pool limit lowered by release 42." in article.body
    assert "### Contributing factors\n\nNo canary." in article.body
    assert "<h3>Lessons learned</h3>" in article.body_html
    assert set(article.services.all()) == {checkout, payments}
    assert article.incident == incident and article.review == published
    assert {h.history_user for h in article.history.all()} == {incident_manager}

    knowledge_article_update(article=article, actor=incident_manager, title="Pool saturation")
    again = knowledge_article_from_review(review=published, actor=incident_manager)
    assert again.pk == article.pk and again.title == "Pool saturation"
    assert KnowledgeArticle.objects.count() == 1


def test_the_article_falls_back_on_the_incidents_lessons_and_cause(published, incident_manager):
    incident = incident_update(
        incident=published.incident,
        actor=None,
        source=Source.SYSTEM,
        correction_reason="From the review.",
        lessons_learned="Canary every release.",
    )
    Review.objects.filter(pk=published.pk).update(lessons_learned="", primary_cause="")

    article = knowledge_article_from_review(review=published, actor=None)

    assert "Canary every release." in article.body
    assert incident.root_cause in article.body


def test_the_markdown_is_sanitized(published, incident_manager):
    Review.objects.filter(pk=published.pk).update(lessons_learned=XSS)

    article = knowledge_article_from_review(review=published, actor=incident_manager)

    html = article.body_html
    assert "<script" not in html and "<img" not in html and 'href="javascript' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<a href="https://ex.com/a" rel="nofollow noopener noreferrer">docs</a>' in html


# --- the admin ----------------------------------------------------------------------------------


def add_article(client, **data):
    return client.post(reverse("admin:reviews_knowledgearticle_add"), data)


def test_staff_write_and_edit_articles_in_the_admin(client, incident_manager, checkout):
    client.force_login(incident_manager)

    response = add_article(
        client, title="Pool saturation", body=XSS, services=[checkout.pk], _save="Save"
    )

    assert response.status_code == 302
    article = KnowledgeArticle.objects.get()
    assert list(article.services.all()) == [checkout]
    assert article.created_by == incident_manager
    assert "<script" not in article.body_html
    page = client.get(reverse("admin:reviews_knowledgearticle_change", args=[article.pk]))
    assert "&lt;script&gt;alert(1)" in page.content.decode()
    assert "<script>alert(1)" not in page.content.decode()

    versions = article.history.count()
    response = client.post(
        reverse("admin:reviews_knowledgearticle_change", args=[article.pk]),
        {"title": "Pool saturation", "body": "**Bold** lesson", "services": [checkout.pk]},
    )
    assert response.status_code == 302
    article.refresh_from_db()
    assert article.body_html == "<p><strong>Bold</strong> lesson</p>\n"
    assert article.history.count() == versions + 1


def test_an_empty_article_is_refused_and_nothing_is_written(client, incident_manager):
    client.force_login(incident_manager)

    response = add_article(client, title="Nothing", body="   ")

    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert not KnowledgeArticle.objects.exists()


def test_a_viewer_reads_but_does_not_write_articles(client, viewer, published):
    knowledge_article_from_review(review=published, actor=None)
    client.force_login(viewer)

    assert add_article(client, title="Mine", body="Text").status_code == 403
    assert client.get(reverse("admin:reviews_knowledgearticle_changelist")).status_code == 200
    assert KnowledgeArticle.objects.count() == 1


def test_the_admin_searches_title_and_body_and_filters_by_service(
    client, viewer, incident_manager, checkout, payments
):
    from reviews.services.knowledge import knowledge_article_create

    knowledge_article_create(
        actor=incident_manager,
        title="Pool saturation",
        body="Raise the limit.",
        services=[checkout],
    )
    knowledge_article_create(
        actor=incident_manager,
        title="Card declines",
        body="Retry the gateway.",
        services=[payments],
    )
    client.force_login(viewer)
    url = reverse("admin:reviews_knowledgearticle_changelist")

    assert titles(client.get(url, {"q": "gateway"})) == ["Card declines"]
    assert titles(client.get(url, {"q": "saturation"})) == ["Pool saturation"]
    assert titles(client.get(url, {"services__id__exact": checkout.pk})) == ["Pool saturation"]


def titles(response) -> list[str]:
    return sorted(str(row.title) for row in response.context["cl"].result_list)


def test_runbook_links_are_kept_in_the_admin_with_http_addresses_only(
    client, incident_manager, viewer, checkout
):
    client.force_login(incident_manager)
    url = reverse("admin:reviews_runbooklink_add")

    bad = client.post(
        url, {"service": checkout.pk, "title": "Evil", "url": "javascript:alert(1)", "position": 0}
    )
    assert bad.status_code == 200 and not RunbookLink.objects.exists()

    good = client.post(
        url,
        {"service": checkout.pk, "title": "Restart", "url": "https://wiki.ex.com/r", "position": 1},
    )
    assert good.status_code == 302
    link = RunbookLink.objects.get()
    assert link.history.get().history_user == incident_manager

    client.force_login(viewer)
    assert (
        client.post(
            reverse("admin:reviews_runbooklink_delete", args=[link.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    client.force_login(incident_manager)
    client.post(reverse("admin:reviews_runbooklink_delete", args=[link.pk]), {"post": "yes"})
    assert not RunbookLink.objects.exists()


# --- the incident page --------------------------------------------------------------------------


def panel(client, incident) -> str:
    html = client.get(reverse("admin:incidents_incident_change", args=[incident.pk])).content
    html = html.decode()
    start = html.index('id="panel-knowledge"')
    return html[start : html.index("</section>", start)]


def test_the_incident_page_shows_runbooks_and_recent_articles_of_its_services(
    client, viewer, published, checkout, payments, make_incident
):
    RunbookLink.objects.create(service=checkout, title="Restart <b>pods</b>", url="https://r.ex/1")
    RunbookLink.objects.create(service=payments, title="Failover", url="https://r.ex/2")
    other = ServiceFactory(slug="search", name="Search")
    RunbookLink.objects.create(service=other, title="Reindex", url="https://r.ex/3")
    knowledge_article_from_review(review=published, actor=None)
    incident = make_incident(title="Checkout slow", services=[checkout])
    client.force_login(viewer)

    text = panel(client, incident)

    assert "Restart &lt;b&gt;pods&lt;/b&gt;" in text and 'href="https://r.ex/1"' in text
    assert "Failover" not in text and "Reindex" not in text
    assert f"{published.incident.number}: Checkout down" in text


def test_an_incident_without_services_says_so(client, viewer, make_incident):
    client.force_login(viewer)
    assert "No services recorded" in panel(client, make_incident())


# --- the API ------------------------------------------------------------------------------------


def test_the_api_lists_searches_filters_and_reads_articles(
    api_as, viewer, incident_manager, published, checkout, payments
):
    from reviews.services.knowledge import knowledge_article_create

    from_review = knowledge_article_from_review(review=published, actor=None)
    knowledge_article_create(
        actor=incident_manager,
        title="Card declines",
        body="Retry the gateway.",
        services=[payments],
    )
    api = api_as(viewer)

    listed = api.get("/api/v1/knowledge-articles/").json()["results"]
    assert [a["title"] for a in listed] == ["Card declines", from_review.title]
    found = api.get("/api/v1/knowledge-articles/", {"search": "pool SATURATION"}).json()
    assert [a["id"] for a in found["results"]] == [from_review.pk]
    by_service = api.get("/api/v1/knowledge-articles/", {"service": "checkout"}).json()
    assert [a["id"] for a in by_service["results"]] == [from_review.pk]
    assert by_service["results"][0]["incident"] == published.incident.number
    assert {s["slug"] for s in by_service["results"][0]["services"]} == {"checkout", "payments"}

    detail = api.get(f"/api/v1/knowledge-articles/{from_review.pk}/").json()
    assert detail["body"] == from_review.body and "<h3>" in detail["body_html"]
    assert api.get("/api/v1/knowledge-articles/999999/").status_code == 404
    assert api.get("/api/v1/knowledge-articles/nope/").status_code == 404
    bad = api.get("/api/v1/knowledge-articles/", {"service": "no-such"})
    assert bad.status_code == 400 and "service" in bad.json()["errors"]


def test_the_api_lists_runbook_links_per_service(api_as, viewer, checkout, payments):
    RunbookLink.objects.create(service=checkout, title="Second", url="https://r.ex/2", position=2)
    RunbookLink.objects.create(service=checkout, title="First", url="https://r.ex/1", position=1)
    RunbookLink.objects.create(service=payments, title="Failover", url="https://r.ex/3")
    api = api_as(viewer)

    rows = api.get("/api/v1/runbook-links/", {"service": "checkout"}).json()
    assert [r["title"] for r in rows] == ["First", "Second"]
    assert rows[0]["service"] == {"slug": "checkout", "name": "Checkout"}
    assert len(api.get("/api/v1/runbook-links/").json()) == 3
    assert api.get("/api/v1/runbook-links/", {"service": "<x>"}).status_code == 400


def test_the_api_needs_a_login(client):
    assert client.get("/api/v1/knowledge-articles/").status_code in (401, 403)
