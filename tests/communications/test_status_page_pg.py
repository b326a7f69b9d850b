"""The status page against real services: PostgreSQL going away after a render (the database
pointed at a closed port), a real Redis killed mid-test, many requests on a just-expired site
through Redis, and the render's one consistent snapshot on PostgreSQL."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client, override_settings

from communications.models import Component
from communications.public import site
from communications.services.components import component_create
from tests.factories import ServiceFactory, UserFactory
from tests.redis_server import redis_caches, redis_server


@pytest.fixture(autouse=True)
def empty_site_cache():
    site._local.update(files=None, at=0.0)
    site._cache_down["until"] = 0.0
    yield
    site._local.update(files=None, at=0.0)
    site._cache_down["until"] = 0.0


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _component(slug="api", name="Public API"):
    admin = UserFactory(username="root", is_superuser=True)
    return component_create(service=ServiceFactory(slug=slug, public_name=name), actor=admin)


class _DatabaseAt:
    """Point this thread's connection at another port (a closed one) until the block ends."""

    def __init__(self, port: int):
        self.port = port

    def __enter__(self):
        connection.close()
        self.saved = connection.settings_dict["PORT"], connection.settings_dict["HOST"]
        connection.settings_dict["HOST"], connection.settings_dict["PORT"] = "127.0.0.1", self.port

    def __exit__(self, *exc):
        connection.close()
        connection.settings_dict["PORT"], connection.settings_dict["HOST"] = self.saved


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_page_answers_200_with_the_database_at_a_closed_port():
    cache.clear()
    _component()
    client = Client()
    before = {
        path: client.get(path).content
        for path in ("/status/", "/status/api/v2/summary.json", "/status/history.atom")
    }
    assert b"Public API" in before["/status/"]
    cache.delete(site.FRESH_KEY)  # expired: the next request tries to render
    with _DatabaseAt(_closed_port()):
        for path, body in before.items():
            response = client.get(path)
            assert response.status_code == 200, path
            assert response.content == body
        cache.clear()  # no copy at all: 503, not 404 or 500
        response = client.get("/status/")
        assert response.status_code == 503
        assert response["Retry-After"]
    cache.clear()


@pytest.mark.redis
@pytest.mark.django_db
def test_the_page_answers_while_redis_is_down():
    _component()
    with redis_server() as server, override_settings(CACHES=redis_caches(server.url)):
        client = Client()
        assert b"Public API" in client.get("/status/").content
        server.kill()
        response = client.get("/status/")
        assert response.status_code == 200
        assert b"Public API" in response.content
        assert client.get("/status/api/v2/status.json").status_code == 200


@pytest.mark.redis
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_requests_on_an_expired_site_render_once_through_redis(monkeypatch):
    _component()
    with redis_server() as server, override_settings(CACHES=redis_caches(server.url)):
        site.site_refresh(export=False)
        cache.delete(site.FRESH_KEY)
        renders = []
        real_render = site.site_render

        def slow(**kwargs):
            renders.append(1)
            time.sleep(0.3)
            return real_render(**kwargs)

        monkeypatch.setattr(site, "site_render", slow)
        barrier = threading.Barrier(30)
        statuses = []

        def request():
            try:
                barrier.wait()
                statuses.append(Client().get("/status/api/v2/summary.json").status_code)
            finally:
                connection.close()

        threads = [threading.Thread(target=request) for _ in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert statuses == [200] * 30
    assert len(renders) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_render_reads_one_snapshot_while_others_commit(monkeypatch):
    _component()
    seen = []

    def counting(context):
        seen.append(Component.objects.count())

        def add():
            try:
                _component(slug="web", name="Website")
            finally:
                connection.close()

        thread = threading.Thread(target=add)
        thread.start()
        thread.join(30)
        seen.append(Component.objects.count())
        return {}

    monkeypatch.setitem(site._renderers, "test.counting", counting)
    site.site_render()
    assert Component.objects.count() == 2  # the other transaction committed meanwhile
    assert seen == [1, 1]
