"""Test settings: the environment defaults for a test run, then Vigil's one settings module.

Only environment defaults are set here; whatever the caller exported (DATABASE_URL, REDIS_URL,
CELERY_BROKER_URL in CI) wins.
"""

import os

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
