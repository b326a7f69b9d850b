"""The status site's per-process memory in front of the cache (VIGIL_STATUS_LOCAL_SECONDS): within
the window repeated requests make no cache round trip, a change published in this process shows
at once, a render by another process shows after the window; and one render task per committed
transaction, however many public changes it holds."""

from __future__ import annotations

import time
from unittest import mock

import pytest
from django.core.cache import cache
from django.db import transaction
from django.test import override_settings

from communications.public import site
from communications.services.components import component_create, component_status_set
from tests.factories import ServiceFactory, UserFactory

WINDOW = 0.5


@pytest.fixture(autouse=True)
def empty_site_cache():
    cache.clear()
    site._local.update(files=None, at=0.0)
    site._cache_down["until"] = 0.0
    site._memory_clear()
    yield
    cache.clear()
    site._local.update(files=None, at=0.0)
    site._cache_down["until"] = 0.0
    site._memory_clear()


@pytest.fixture
def admin_user(db):
    return UserFactory(username="root", is_superuser=True)


def _component(actor, slug="api", name="Public API"):
    return component_create(service=ServiceFactory(slug=slug, public_name=name), actor=actor)


@pytest.fixture
def cache_calls(monkeypatch):
    """Every cache read of the status site's keys, by name (other parts of a request, such as
    the rate limits, use the cache too; a backend's get_many may call its own get: one call)."""
    calls = []
    inside = []
    for name in ("get", "get_many"):
        real = getattr(cache, name)

        def counting(keys, *args, _real=real, _name=name, **kwargs):
            if not inside and any(
                key.startswith(site.KEY) for key in ([keys] if _name == "get" else keys)
            ):
                calls.append(_name)
            inside.append(_name)
            try:
                return _real(keys, *args, **kwargs)
            finally:
                inside.pop()

        monkeypatch.setattr(cache, name, counting)
    return calls


def _get(client, path="/status/"):
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.content.decode()


@pytest.mark.django_db
@override_settings(VIGIL_STATUS_LOCAL_SECONDS=WINDOW)
def test_repeated_requests_within_the_window_make_no_cache_round_trip(
    client, admin_user, cache_calls
):
    _component(admin_user)
    site.site_refresh(export=False)  # as the render task leaves it (another process's render)
    page = _get(client)
    summary = _get(client, "/status/api/v2/summary.json")
    cache_calls.clear()
    for _ in range(5):
        assert _get(client) == page
        assert _get(client, "/status/api/v2/summary.json") == summary
    assert cache_calls == []
    time.sleep(WINDOW + 0.05)
    assert _get(client) == page
    assert cache_calls == ["get_many"]  # one check: still fresh, still the same render
    assert _get(client, "/status/api/v2/summary.json") == summary
    assert cache_calls == ["get_many"]


@pytest.mark.django_db
@override_settings(VIGIL_STATUS_LOCAL_SECONDS=60)
def test_a_change_published_in_this_process_shows_at_once(
    client, admin_user, django_capture_on_commit_callbacks
):
    api = _component(admin_user)
    assert "All Systems Operational" in _get(client)
    with django_capture_on_commit_callbacks(execute=True):
        component_status_set(component=api, status="major_outage", actor=admin_user)
    assert "Major Service Outage" in _get(client)


@pytest.mark.django_db
@override_settings(VIGIL_STATUS_LOCAL_SECONDS=WINDOW)
def test_a_render_by_another_process_shows_after_the_window(client, admin_user):
    api = _component(admin_user)
    assert "All Systems Operational" in _get(client)
    # Another process renders the site anew (the render task after a change it committed): new
    # files and a new render id in the cache; this process was not told.
    component_status_set(component=api, status="major_outage", actor=admin_user)
    files = site.site_render()
    cache.set_many({site.KEY + "file:" + path: artifact for path, artifact in files.items()})
    cache.set(site.RENDER_KEY, "another-process-render", None)
    assert "All Systems Operational" in _get(client)  # within the window: this process's copy
    time.sleep(WINDOW + 0.05)
    assert "Major Service Outage" in _get(client)


@pytest.mark.django_db
@override_settings(VIGIL_STATUS_LOCAL_SECONDS=WINDOW)
def test_an_expired_site_is_rendered_again_after_the_window(client, admin_user, monkeypatch):
    _component(admin_user)
    _get(client)
    renders = []
    real_render = site.site_render
    monkeypatch.setattr(site, "site_render", lambda **kw: renders.append(1) or real_render(**kw))
    cache.delete(site.FRESH_KEY)  # VIGIL_STATUS_FRESH_SECONDS ran out
    _get(client)
    assert renders == []
    time.sleep(WINDOW + 0.05)
    _get(client)
    assert renders == [1]


@pytest.mark.django_db
@override_settings(VIGIL_STATUS_LOCAL_SECONDS=0)
def test_with_the_window_at_zero_every_request_asks_the_cache(client, admin_user, cache_calls):
    _component(admin_user)
    site.site_refresh(export=False)
    _get(client)
    cache_calls.clear()
    _get(client)
    _get(client)
    assert cache_calls == ["get_many", "get_many"]


# --- one render task per transaction ----------------------------------------------------------


@pytest.mark.django_db
def test_many_public_changes_in_one_transaction_queue_one_render(
    admin_user, django_capture_on_commit_callbacks
):
    api = _component(admin_user)
    web = _component(admin_user, "web", "Website")
    with (
        mock.patch("communications.tasks.status_site_render.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
        transaction.atomic(),
    ):
        component_status_set(component=api, status="major_outage", actor=admin_user)
        component_status_set(component=web, status="partial_outage", actor=admin_user)
        site.public_changed()
    assert delay.call_count == 1


@pytest.mark.django_db
def test_a_change_in_a_rolled_back_savepoint_then_one_outside_queue_one_render(
    admin_user, django_capture_on_commit_callbacks
):
    api = _component(admin_user)
    with (
        mock.patch("communications.tasks.status_site_render.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
        transaction.atomic(),
    ):
        try:
            with transaction.atomic():
                component_status_set(component=api, status="major_outage", actor=admin_user)
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        component_status_set(component=api, status="partial_outage", actor=admin_user)
    assert delay.call_count == 1


@pytest.mark.django_db
def test_a_change_in_a_released_savepoint_then_one_in_a_rolled_back_one_queue_one_render(
    admin_user, django_capture_on_commit_callbacks
):
    api = _component(admin_user)
    with (
        mock.patch("communications.tasks.status_site_render.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
        transaction.atomic(),
    ):
        component_status_set(component=api, status="major_outage", actor=admin_user)
        try:
            with transaction.atomic():
                site.public_changed()
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
    assert delay.call_count == 1


@pytest.mark.django_db
def test_separate_transactions_queue_a_render_each(admin_user, django_capture_on_commit_callbacks):
    api = _component(admin_user)
    with (
        mock.patch("communications.tasks.status_site_render.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        component_status_set(component=api, status="major_outage", actor=admin_user)
        component_status_set(component=api, status="operational", actor=admin_user)
    assert delay.call_count == 2
