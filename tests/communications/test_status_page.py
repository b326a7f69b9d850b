"""The public status page through /status/: what it shows, what it never shows, bad input, and
how it is served (from the cache, one render for many requests, the last copy while the
database is down, 503 when there is no copy, a re-render once a public change commits)."""

from __future__ import annotations

import posixpath
import socket
import threading
import time
from datetime import timedelta
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from django.core.cache import cache
from django.db import OperationalError, connection
from django.db.backends.utils import CursorWrapper
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from communications.markdown import markdown_to_html
from communications.models import (
    Component,
    ComponentGroup,
    Maintenance,
    StatusPageSettings,
    StatusUpdate,
    StatusUpdateComponent,
)
from communications.public import site
from communications.services.components import component_create, component_status_set
from incidents.models import Source
from incidents.services.common import timeline_record
from tests.factories import ServiceFactory, UserFactory


@pytest.fixture(autouse=True)
def empty_site_cache():
    cache.clear()
    site._local.update(files=None, at=0.0)
    site._cache_down["until"] = 0.0
    yield
    cache.clear()
    site._local.update(files=None, at=0.0)
    site._cache_down["until"] = 0.0


@pytest.fixture
def admin_user(db):
    return UserFactory(username="root", is_superuser=True)


def make_component(
    actor, slug, public_name, *, group=None, start_days_ago=100, display=None, **kwargs
):
    """A component made by the service; ``display``: its showcase / only-if-degraded flags."""
    service = ServiceFactory(slug=slug, name=f"{public_name} internal", public_name=public_name)
    component = component_create(
        service=service,
        actor=actor,
        group=group,
        start_date=timezone.localdate() - timedelta(days=start_days_ago),
        at=timezone.now() - timedelta(days=start_days_ago),
        **kwargs,
    )
    if display:
        Component.objects.filter(pk=component.pk).update(**display)
        component.refresh_from_db()
    return component


def publish(incident, *, title, status, body, components=(), at=None, actor=None):
    """A published update as the publishing service leaves it (the workflow has its own tests):
    the sanitized body, the affected components set to their new status."""
    at = at or timezone.now()
    update = StatusUpdate.objects.create(
        incident=incident,
        public_title=title,
        public_status=status,
        body=body,
        body_html=markdown_to_html(body),
        state="published",
        published_at=at,
        published_by=actor,
        created_by=actor,
    )
    for component, new_status in components:
        StatusUpdateComponent.objects.create(
            status_update=update,
            component=component,
            new_status=new_status,
            old_status=component.status,
        )
        component_status_set(
            component=component, status=new_status, actor=actor, status_update=update, at=at
        )
    return update


def page(client, path="/status/"):
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.content.decode()


@pytest.mark.django_db
def test_the_page_shows_the_banner_components_by_group_and_the_active_incident(
    client, admin_user, make_incident
):
    group = ComponentGroup.objects.create(name="Payments", position=1)
    checkout = make_component(admin_user, "checkout", "Checkout", group=group)
    api = make_component(admin_user, "api", "Public API")
    incident = make_incident(title="db primary failover", status="acknowledged")
    first = timezone.now() - timedelta(minutes=40)
    publish(
        incident,
        title="Payments are failing",
        status="investigating",
        body="We are **looking** into failed payments.",
        components=[(checkout, "partial_outage")],
        at=first,
    )
    publish(
        incident,
        title="Payments are failing",
        status="identified",
        body="The cause is found; a fix is being deployed.",
        at=first + timedelta(minutes=20),
    )

    html = page(client)
    assert '<html lang="en">' in html
    assert "<header" in html and "<main" in html and "<footer" in html
    assert "Partial System Outage" in html  # the banner: a component in partial outage
    assert "indicator-major" in html
    assert "Payments" in html and "Checkout" in html and "Public API" in html
    assert "Partial outage" in html and "Operational" in html
    assert "Active incidents" in html
    assert "Payments are failing" in html
    assert "<strong>looking</strong>" in html
    # All published updates, newest first, each with its time.
    assert html.index("The cause is found") < html.index("failed payments")
    assert html.count('<li class="update">') == 2
    assert f'href="incidents/{incident.number}.html"' in html
    assert 'href="history.html"' in html
    assert 'href="status.css"' in html
    # One 90-day bar per day, each with its text, the percentage under them.
    assert html.count('<rect class="day') == 2 * 90
    assert "% uptime" in html
    assert "no downtime</title>" in html
    # Page order (position, then groups before components): the ungrouped component first.
    assert html.index("Public API") < html.index('<section class="group"')
    assert html.count('<ul class="components">') == 2  # the ungrouped run, the group's
    assert api.code == "api"

    incident_page = page(client, f"/status/incidents/{incident.number}")
    assert "<h1>Payments are failing</h1>" in incident_page
    assert "The cause is found" in incident_page and "failed payments" in incident_page
    assert 'href="../status.css"' in incident_page
    css = client.get("/status/status.css")
    assert css.status_code == 200 and css["Content-Type"].startswith("text/css")
    assert b"prefers-color-scheme: dark" in css.content


@pytest.mark.django_db
def test_the_banner_follows_the_components(client, admin_user):
    api = make_component(admin_user, "api", "Public API")
    web = make_component(admin_user, "web", "Website")
    assert "All Systems Operational" in page(client)
    for statuses, text in [
        (("degraded_performance", "operational"), "Minor Service Outage"),
        (("major_outage", "operational"), "Partial System Outage"),
        (("major_outage", "major_outage"), "Major Service Outage"),
        (("under_maintenance", "operational"), "Service Under Maintenance"),
    ]:
        for component, status in zip((api, web), statuses, strict=True):
            component_status_set(component=component, status=status, actor=admin_user)
        site.site_refresh(export=False)
        assert text in page(client), statuses


@pytest.mark.django_db
def test_uptime_bars_show_a_bad_day(client, admin_user):
    api = make_component(admin_user, "api", "Public API")
    # 09:00 on the page's day (UTC) three days ago: six hours that stay inside one day's bar
    # whatever the time of the run.
    day = (timezone.now() - timedelta(days=3)).replace(hour=9, minute=0, second=0, microsecond=0)
    component_status_set(component=api, status="major_outage", actor=admin_user, at=day)
    component_status_set(
        component=api, status="operational", actor=admin_user, at=day + timedelta(hours=6)
    )
    html = page(client)
    assert "6 h major outage" in html
    assert 'class="day major"' in html or 'class="day partial"' in html
    assert "Days with downtime" in html  # the bars' text alternative


@pytest.mark.django_db
def test_maintenance_history_and_settings_appear(client, admin_user, make_incident):
    StatusPageSettings.objects.filter(pk=1).update(
        name="Acme status",
        home_url="https://acme.example/",
        support_url="https://acme.example/help",
        logo_url="https://acme.example/logo.png",
        time_zone="Europe/Paris",
    )
    api = make_component(admin_user, "api", "Public API")
    upcoming = Maintenance.objects.create(
        title="Database upgrade",
        body="We **upgrade** the database.",
        body_html=markdown_to_html("We **upgrade** the database."),
        scheduled_for=timezone.now() + timedelta(days=2),
        scheduled_until=timezone.now() + timedelta(days=2, hours=2),
    )
    upcoming.components.add(api)
    resolved = make_incident(title="internal", status="resolved")
    publish(resolved, title="Slow API", status="resolved", body="Fixed.")

    html = page(client)
    assert "<title>Acme status</title>" in html
    assert 'href="https://acme.example/"' in html and 'href="https://acme.example/help"' in html
    assert 'src="https://acme.example/logo.png" alt="Acme status"' in html
    assert "Europe/Paris" in html
    assert "Scheduled maintenance" in html and "Database upgrade" in html
    assert "Active incidents" not in html
    assert "Slow API" in html  # recent incidents

    assert "<strong>upgrade</strong>" in page(client, f"/status/maintenance/{upcoming.pk}")
    history = page(client, "/status/history")
    assert "Slow API" in history
    month = timezone.now().astimezone(ZoneInfo("Europe/Paris")).strftime("%Y-%m")
    assert f'href="history/{month}.html"' in history
    assert "Slow API" in page(client, f"/status/history/{month}")


@pytest.mark.django_db
def test_history_is_paginated_by_month(client, admin_user, make_incident):
    now = timezone.now()
    for n, days in enumerate((0, 40, 400)):
        publish(
            make_incident(title=f"internal {n}", status="resolved"),
            title=f"Incident number {n}",
            status="resolved",
            body="Done.",
            at=now - timedelta(days=days),
        )
    site.site_refresh(export=False)
    files = site.site_render()
    months = sorted(path for path in files if path.startswith("history/"))
    assert len(months) == 3
    oldest, middle, newest = (page(client, "/status/" + m) for m in months)
    assert "Incident number 2" in oldest and "Incident number 0" not in oldest
    assert "Incident number 0" in newest and "Incident number 2" not in newest
    assert f'href="../{months[1]}"' in oldest  # newer
    assert f'href="../{months[0]}"' in middle and f'href="../{months[2]}"' in middle
    history = page(client, "/status/history")
    assert "Incident number 2" not in history  # a year ago: on its month's page only
    assert f'href="{months[0]}"' in history


SECRETS = [
    "SECRET-internal-title",
    "SECRET-summary",
    "SECRET-business-impact",
    "SECRET-root-cause",
    "SECRET-resolution",
    "SECRET-timeline-note",
    "SECRET-draft-title",
    "SECRET-draft-body",
    "SECRET-service-name",
    "Secretperson",
    "secret-person@example.com",
]


@pytest.mark.django_db
def test_no_internal_text_in_any_rendered_file(admin_user, make_incident):
    person = UserFactory(
        username="secret-person", first_name="Secretperson", email="secret-person@example.com"
    )
    service = ServiceFactory(slug="api", name="SECRET-service-name", public_name="Public API")
    api = component_create(service=service, actor=admin_user)
    incident = make_incident(
        title="SECRET-internal-title",
        summary="SECRET-summary",
        business_impact="SECRET-business-impact",
        root_cause="SECRET-root-cause",
        status="resolved",
    )
    incident.resolution = "SECRET-resolution"
    incident.save()
    timeline_record(
        incident=incident, kind="note", source=Source.SYSTEM, actor=person,
        message="SECRET-timeline-note",
    )  # fmt: skip
    publish(
        incident,
        title="API errors",
        status="resolved",
        body="Resolved.",
        components=[(api, "operational")],
        actor=person,
    )
    StatusUpdate.objects.create(
        incident=incident,
        public_title="SECRET-draft-title",
        public_status="investigating",
        body="SECRET-draft-body",
        body_html=markdown_to_html("SECRET-draft-body"),
        created_by=person,
    )
    files = site.site_render()
    assert f"incidents/{incident.number}.html" in files
    assert "index.html" in files and "history.html" in files
    for path, artifact in files.items():
        text = artifact.body.decode(errors="replace")
        for secret in SECRETS:
            assert secret.lower() not in text.lower(), (secret, path)


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.elements = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, attrs))


def elements_of(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every element a browser would build from ``html``: (tag, attributes)."""
    parser = _Elements()
    parser.feed(html)
    return parser.elements


VECTORS = [
    '<script>alert("x")</script>',
    '<img src=x onerror=alert("x")>',
    '"><svg onload=alert("x")>',
    "javascript:alert('x')",
]


@pytest.mark.django_db
def test_injection_in_public_fields_is_shown_as_text(client, admin_user, make_incident):
    StatusPageSettings.objects.filter(pk=1).update(
        name='Acme <script>alert("name")</script>',
        home_url="javascript:alert('home')",
        support_url='https://x.example/"><script>alert(1)</script>',
    )
    group = ComponentGroup.objects.create(name=VECTORS[2], description=VECTORS[0])
    make_component(admin_user, "api", VECTORS[0], group=group, description=VECTORS[1])
    incident = make_incident(title="internal", status="acknowledged")
    publish(
        incident,
        title=VECTORS[1],
        status="investigating",
        body=(
            '<script>alert("body")</script> <img src=x onerror=alert(1)> '
            '[click](javascript:alert(1)) <a href="javascript:alert(2)">x</a> '
            "<iframe src=https://evil.example></iframe> <style>body{display:none}</style>"
        ),
    )
    maintenance = Maintenance.objects.create(
        title=VECTORS[0],
        body="[m](javascript:alert(1))",
        body_html='<p><a href="javascript:alert(1)" onclick="x()">m</a><script>x()</script></p>',
        scheduled_for=timezone.now() + timedelta(days=1),
        scheduled_until=timezone.now() + timedelta(days=1, hours=1),
    )
    paths = [
        "/status/",
        f"/status/incidents/{incident.number}",
        f"/status/maintenance/{maintenance.pk}",
        "/status/history",
    ]
    for path in paths:
        elements = elements_of(page(client, path))
        tags = {tag for tag, _ in elements}
        assert not tags & {"script", "img", "iframe", "style", "object", "embed"}, path
        for tag, attributes in elements:
            for name, value in attributes:
                assert not name.startswith("on"), (path, tag, name)
                assert not (value or "").strip().lower().startswith("javascript:"), (path, tag)
    html = page(client)
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(&quot;x&quot;)&gt;" in html
    assert "Acme &lt;script&gt;" in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/status/incidents/INC-20000101-999",
        "/status/incidents/INC-20000101-999/",
        "/status/incidents/nope.html",
        "/status/maintenance/99999",
        "/status/history/1999-01",
        "/status/components/nope/badge.svg",
        "/status/nope",
        "/status/api/v2/nope.json",
        "/status/incidents/../index.html",
        "/status/%2e%2e/%2e%2e/etc/passwd",
    ],
)
def test_unknown_public_paths_are_404(client, admin_user, path):
    make_component(admin_user, "api", "Public API")
    assert client.get("/status/").status_code == 200
    assert client.get(path, follow=True).status_code == 404


@pytest.mark.django_db
def test_a_trailing_slash_redirects_so_relative_links_resolve(client, admin_user, make_incident):
    make_component(admin_user, "api", "Public API")
    response = client.get("/status/history/?page=2")
    assert response.status_code == 301
    assert response["Location"] == "/status/history?page=2"
    assert 'href="status.css"' in page(client, "/status/history")


def _database_down(monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("connection to server at 127.0.0.1, port 1 failed")

    monkeypatch.setattr(CursorWrapper, "_execute_with_wrappers", refuse)


@pytest.mark.django_db
def test_the_last_copy_is_served_while_the_database_is_down(client, admin_user, monkeypatch):
    make_component(admin_user, "api", "Public API")
    rendered = page(client)
    summary = client.get("/status/api/v2/summary.json").content
    cache.delete(site.FRESH_KEY)  # expired: the next request tries to render
    _database_down(monkeypatch)
    with pytest.raises(OperationalError):
        site.site_render()
    assert page(client) == rendered
    assert client.get("/status/api/v2/summary.json").content == summary
    assert client.get("/status/nope").status_code == 404


@pytest.mark.django_db
def test_without_any_copy_and_the_database_down_the_page_is_503(client, monkeypatch):
    _database_down(monkeypatch)
    response = client.get("/status/")
    assert response.status_code == 503
    assert response["Retry-After"] == str(site.RETRY_SECONDS)
    assert client.get("/status/incidents/INC-1").status_code == 503


@pytest.mark.django_db
def test_the_page_is_served_while_the_cache_is_down(client, admin_user, monkeypatch):
    make_component(admin_user, "api", "Public API")
    renders = []
    real_render = site.site_render
    monkeypatch.setattr(site, "site_render", lambda **kw: renders.append(1) or real_render(**kw))

    def down(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    for name in ("get", "get_many", "set", "set_many", "add", "delete", "delete_many"):
        monkeypatch.setattr(cache, name, down)
    assert "Public API" in page(client)
    assert "Public API" in page(client)
    assert client.get("/status/api/v2/status.json").status_code == 200
    assert len(renders) == 1  # this process's copy, re-rendered once per fresh period


def _concurrently(n, target):
    barrier = threading.Barrier(n)
    results = []

    def run():
        try:
            barrier.wait()
            results.append(target())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def _counting_slow_render(monkeypatch):
    renders = []
    real_render = site.site_render

    def slow(**kwargs):
        renders.append(1)
        time.sleep(0.3)
        return real_render(**kwargs)

    monkeypatch.setattr(site, "site_render", slow)
    return renders


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("previous_copy", [True, False], ids=["expired", "empty"])
def test_many_requests_on_a_stale_site_cause_one_render(client, monkeypatch, previous_copy):
    make_component(UserFactory(username="root", is_superuser=True), "api", "Public API")
    if previous_copy:
        site.site_refresh(export=False)
        cache.delete(site.FRESH_KEY)
    renders = _counting_slow_render(monkeypatch)

    from django.test import Client

    results = _concurrently(20, lambda: Client().get("/status/").status_code)
    assert results == [200] * 20
    assert len(renders) == 1


@pytest.mark.django_db
def test_a_public_change_rerenders_the_page_once_committed(
    client, admin_user, django_capture_on_commit_callbacks
):
    api = make_component(admin_user, "api", "Public API")
    assert "All Systems Operational" in page(client)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        component_status_set(component=api, status="major_outage", actor=admin_user)
    # Not committed yet: the cached page stays as it was.
    assert "All Systems Operational" in page(client)
    for callback in callbacks:
        callback()
    html = page(client)
    assert "Major Service Outage" in html and "Major outage" in html


@pytest.mark.django_db
def test_a_change_committed_during_a_render_leaves_the_site_stale(
    client, admin_user, monkeypatch, django_capture_on_commit_callbacks
):
    api = make_component(admin_user, "api", "Public API")
    page(client)
    cache.delete(site.FRESH_KEY)
    real_render = site.site_render

    def render_then_change(**kwargs):
        files = real_render(**kwargs)  # renders the site as it was
        with django_capture_on_commit_callbacks(execute=True):
            component_status_set(component=api, status="major_outage", actor=admin_user)
        return files

    monkeypatch.setattr(site, "site_render", render_then_change)
    assert "All Systems Operational" in page(client)
    monkeypatch.setattr(site, "site_render", real_render)
    assert "Major Service Outage" in page(client)


@pytest.mark.django_db
def test_a_file_evicted_from_the_cache_is_rendered_again_not_404(client, admin_user, make_incident):
    make_component(admin_user, "api", "Public API")
    incident = make_incident(title="internal", status="resolved")
    publish(incident, title="Slow API", status="resolved", body="Fixed.")
    page(client)
    # A full cache (the file cache culls a third of its entries past MAX_ENTRIES) drops files.
    cache.delete(site.KEY + f"file:incidents/{incident.number}.html")
    assert "Slow API" in page(client, f"/status/incidents/{incident.number}")


@pytest.mark.django_db
def test_hidden_components_and_maintenance_in_progress(client, admin_user):
    make_component(admin_user, "api", "Public API")
    make_component(admin_user, "tool", "Hidden thing", display={"showcase": False})
    quiet = make_component(
        admin_user, "sms", "SMS delivery", display={"only_show_if_degraded": True}
    )
    ongoing = Maintenance.objects.create(
        title="Network work",
        status="in_progress",
        started_at=timezone.now() - timedelta(minutes=5),
        scheduled_for=timezone.now() - timedelta(minutes=5),
        scheduled_until=timezone.now() + timedelta(hours=1),
    )
    html = page(client)
    assert "Public API" in html
    assert "Hidden thing" not in html and "SMS delivery" not in html
    assert "Maintenance in progress" in html and "Network work" in html
    assert "Scheduled maintenance" not in html
    assert f'href="maintenance/{ongoing.pk}.html"' in html

    component_status_set(component=quiet, status="partial_outage", actor=admin_user)
    site.site_refresh(export=False)
    assert "SMS delivery" in page(client)


@pytest.mark.django_db
def test_the_render_reads_a_fixed_number_of_queries(admin_user, make_incident):
    """However many incidents, components and intervals: no query per item."""

    def render_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            site.site_render()
        return len(queries)

    api = make_component(admin_user, "api", "Public API")
    publish(make_incident(title="a", status="resolved"), title="A", status="resolved", body="x")
    few = render_queries()
    for n in range(4):
        component = make_component(admin_user, f"svc-{n}", f"Service {n}")
        component_status_set(component=component, status="partial_outage", actor=admin_user)
        publish(
            make_incident(title=f"b{n}", status="acknowledged"),
            title=f"B{n}",
            status="investigating",
            body="y",
            components=[(api, "degraded_performance")],
        )
    assert render_queries() == few


@pytest.mark.django_db
def test_every_relative_link_of_the_rendered_pages_names_a_rendered_file(admin_user, make_incident):
    """The static export is self-contained: each page's links, stylesheet and feeds resolve to
    files of the same render, wherever the export is hosted."""
    group = ComponentGroup.objects.create(name="Payments")
    api = make_component(admin_user, "api", "Public API", group=group)
    now = timezone.now()
    for n, days in enumerate((0, 35, 70)):
        publish(
            make_incident(title=f"internal {n}", status="resolved"),
            title=f"Incident {n}",
            status="resolved",
            body="Done, see [our blog](https://blog.example/post).",
            components=[(api, "operational")],
            at=now - timedelta(days=days),
        )
    Maintenance.objects.create(
        title="Upgrade",
        scheduled_for=now + timedelta(days=1),
        scheduled_until=now + timedelta(days=1, hours=1),
    )
    files = site.site_render()
    pages = [path for path in files if path.endswith(".html")]
    assert len(pages) >= 8
    checked = 0
    for path in pages:
        for tag, attributes in elements_of(files[path].body.decode()):
            for name, value in attributes:
                if name not in ("href", "src") or value is None:
                    continue
                if value.startswith(("https://", "http://", "mailto:", "data:", "#")):
                    continue
                target = posixpath.normpath(posixpath.join(posixpath.dirname(path), value))
                assert target in files, (path, tag, value)
                checked += 1
    assert checked > 50


@pytest.mark.django_db
def test_a_cache_that_never_answers_costs_one_wait_not_one_per_request(client, admin_user):
    """A Redis that accepts connections and never answers (production's one-second socket
    timeouts): the first request waits for the timeout, the next ones serve this process's copy
    without asking the cache again for a while."""
    make_component(admin_user, "api", "Public API")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel accepts; nobody ever answers
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    try:
        with override_settings(CACHES=caches):
            first = client.get("/status/")
            started = time.monotonic()
            codes = [client.get("/status/").status_code for _ in range(5)]
            elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert first.status_code == 200 and b"Public API" in first.content
    assert codes == [200] * 5
    # Waiting for the one-second timeout on each would take 5 s at least.
    assert elapsed < 3, elapsed
