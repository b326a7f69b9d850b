"""Test settings: the environment defaults for a test run, then Vigil's one settings module.

Only environment defaults are set here; whatever the caller exported (DATABASE_URL, REDIS_URL,
CELERY_BROKER_URL in CI) wins.
"""

import os
import re

os.environ.setdefault("DJANGO_SECRET_KEY", "vigil-test-secret-key-" + "x" * 40)
os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
os.environ.setdefault("VIGIL_VAR_DIR", os.path.join(os.path.dirname(__file__), "..", "var", "test"))
# WhiteNoise looks for the collected static files when the middleware starts.
os.environ.setdefault("DJANGO_STATIC_ROOT", os.path.join(os.environ["VIGIL_VAR_DIR"], "static"))
os.makedirs(os.environ["DJANGO_STATIC_ROOT"], exist_ok=True)

from config.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
if not REDIS_URL:  # noqa: F405
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# The status tests expire the site by hand and expect the next request to see it: no per-process
# memory of the status files (its own tests turn it on).
VIGIL_STATUS_LOCAL_SECONDS = 0

# A test database of this run's own, so two runs on one machine (two checkouts, CI beside a
# developer) never create, flush or drop each other's. pytest-django drops it at the end of the
# run (unless --reuse-db) and, under pytest-xdist, adds each worker's suffix (_gw0, _gw1, ...).
# Real worker processes started by tests are handed this name (tests.workers.database_url).
if DATABASES["default"]["ENGINE"] == "config.sqlite":  # noqa: F405
    # An in-memory test database per process, as for Django's own SQLite backend (pytest-django
    # recognises that one by its ENGINE name only, and would name a file per xdist worker).
    DATABASES["default"].setdefault("TEST", {})["NAME"] = ":memory:"  # noqa: F405
if "postgresql" in DATABASES["default"]["ENGINE"]:  # noqa: F405
    _run_id = re.sub(r"\W", "_", os.environ.get("VIGIL_TEST_RUN_ID") or str(os.getpid()))
    DATABASES["default"].setdefault("TEST", {})["NAME"] = f"test_vigil_{_run_id}"  # noqa: F405

# Under pytest-xdist each worker process has a Redis database of its own (the run's database
# number + 1 + the worker's number) for the cache and the broker: the cache's clear() empties a
# whole Redis database, and a test's purge of the broker would take the other worker's messages.
_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if REDIS_URL and re.fullmatch(r"gw\d+", _xdist_worker):  # noqa: F405
    from urllib.parse import urlsplit, urlunsplit

    def _worker_redis_url(url: str) -> str:
        parts = urlsplit(url)
        number = int(parts.path.strip("/") or 0) + 1 + int(_xdist_worker[2:])
        return urlunsplit(parts._replace(path=f"/{number}"))

    if CELERY_BROKER_URL == REDIS_URL:  # noqa: F405
        CELERY_BROKER_URL = _worker_redis_url(CELERY_BROKER_URL)  # noqa: F405
    REDIS_URL = _worker_redis_url(REDIS_URL)  # noqa: F405
    CACHES["default"]["LOCATION"] = REDIS_URL
