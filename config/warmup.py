"""Import at start-up what a process would otherwise import in its first requests or tasks.

Django imports the URLconf, and with it every view, only when the first request comes; much of
Vigil imports its services inside functions (to keep apps from importing each other at load
time), so a Celery pool process imports them in its first task; the first task published
imports Celery's message building and the Redis client. On a small machine whose Python keeps
no compiled bytecode that was 1.4 s of a new web worker's first request, and it came during
the alert storm after a restart or a scale-out, when it matters most. Nothing here connects to
the database or the broker.

- :func:`web` runs when ``config.wsgi`` is imported: in each web worker before it serves.
- :func:`worker` runs in a Celery worker's main process before its pool starts
  (``worker_init``), so the prefork pool's processes inherit the modules.
"""

from __future__ import annotations

import importlib
import pkgutil

# Vigil's own apps; every module of theirs is imported except these packages' (run by Django's
# commands only).
APPS = ("incidents", "escalation", "communications", "reviews", "kpis")
SKIPPED = frozenset({"migrations", "management"})


def _import_package(name: str) -> None:
    package = importlib.import_module(name)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in SKIPPED:
            continue
        full = f"{name}.{info.name}"
        if info.ispkg:
            _import_package(full)
        else:
            importlib.import_module(full)


def vigil_modules() -> None:
    for app in APPS:
        _import_package(app)


def publishing() -> None:
    """Every app's tasks bound to the app, and what publishing a task uses: the message
    factory, the (disabled) result backend, the events dispatcher and the broker's transport
    class. A kombu connection connects only when first used: none is opened here."""
    from config.celery import app

    app.loader.import_default_modules()
    app.tasks  # noqa: B018 - the property finalizes the app
    app.amqp  # noqa: B018
    app.backend  # noqa: B018
    app.events.Dispatcher  # noqa: B018
    connection = app.connection_for_write()
    try:
        connection.transport  # noqa: B018
    finally:
        connection.release()


def web() -> None:
    from django.urls import get_resolver

    vigil_modules()
    get_resolver().url_patterns  # noqa: B018 - the property imports the URLconfs and views
    publishing()


def worker() -> None:
    vigil_modules()
    publishing()
