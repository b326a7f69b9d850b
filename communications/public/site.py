"""The public status site as a set of files, rendered together and served from the cache.

Every public artifact (``index.html``, ``incidents/<id>.html``, ``api/v2/summary.json``,
``history.atom``, ``badge.svg``, ...) is produced by a *renderer* registered with
:func:`renderer`: a function of a :class:`RenderContext` returning ``{path: Artifact}``. All
renderers run together, in one read-only transaction, so the files agree with each other.

* **When.** :func:`public_changed` (called by every service that changes something public, in
  its transaction) marks the site stale once the transaction commits and queues the render task,
  which re-renders, warms the cache and writes the static export. Besides, the rendered site is
  fresh for ``VIGIL_STATUS_FRESH_SECONDS`` (uptime bars and "x minutes ago" move with time).
* **Serving** (:func:`site_artifact`). A fresh site is served from the cache. A stale or
  missing one is re-rendered by exactly one request (a cache lock); the others get the previous
  copy, or, when there is none yet, wait for the render. The artifacts are kept without expiry,
  so if the database is down the last rendered copy is served (and the render retried after
  ``RETRY_SECONDS``).
* **Static export.** The render task and ``manage.py statuspage_export`` write the same files to
  the storage ``VIGIL_STATUS_EXPORT_STORAGE`` names (a Django ``STORAGES`` alias), so the page
  can be hosted apart from Vigil.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

KEY = "vigil:status:"
FRESH_KEY = KEY + "fresh"
LOCK_KEY = KEY + "lock"
INDEX_KEY = KEY + "paths"
LOCK_SECONDS = 60
RETRY_SECONDS = 5
WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class Artifact:
    body: bytes
    content_type: str


@dataclass
class RenderContext:
    now: datetime
    # Shared between renderers of one render (e.g. a snapshot one builds and others reuse).
    memo: dict = field(default_factory=dict)


Renderer = Callable[[RenderContext], dict[str, Artifact]]
_renderers: dict[str, Renderer] = {}


def renderer(func: Renderer) -> Renderer:
    """Register a renderer (by its qualified name, so a reload replaces it)."""
    _renderers[f"{func.__module__}.{func.__qualname__}"] = func
    return func


def site_render(*, now: datetime | None = None) -> dict[str, Artifact]:
    """Run every renderer in one read-only snapshot of the database; returns path -> artifact.
    Raises what the database raises (the callers decide what to serve instead)."""
    from . import renderers  # noqa: F401  (registers the built-in renderers)

    context = RenderContext(now=now or timezone.now())
    files: dict[str, Artifact] = {}
    with transaction.atomic():
        for render in _renderers.values():
            files.update(render(context))
    return files


def _store(files: dict[str, Artifact]) -> None:
    cache.set_many({KEY + "file:" + path: artifact for path, artifact in files.items()}, None)
    old = cache.get(INDEX_KEY) or []
    gone = [KEY + "file:" + path for path in old if path not in files]
    if gone:
        cache.delete_many(gone)
    cache.set(INDEX_KEY, sorted(files), None)
    cache.set(FRESH_KEY, 1, settings.VIGIL_STATUS_FRESH_SECONDS)


def site_refresh(*, export: bool = True) -> dict[str, Artifact]:
    """Render the site, store it in the cache and (``export``) write the static export."""
    files = site_render()
    _store(files)
    if export:
        site_export(files)
    return files


# The list of paths the last export wrote, kept in the export itself.
EXPORT_MANIFEST = "vigil-status-files.json"


def site_export(files: dict[str, Artifact], storage=None) -> None:
    """Write the files to the export storage (or ``storage``), and delete exported files that
    are no longer part of the site (those the previous export's manifest lists)."""
    import json

    from django.core.files.storage import storages

    if storage is None:
        alias = settings.VIGIL_STATUS_EXPORT_STORAGE
        if not alias:
            return
        storage = storages[alias]
    previous: list[str] = []
    if storage.exists(EXPORT_MANIFEST):
        with storage.open(EXPORT_MANIFEST) as manifest:
            try:
                previous = [str(path) for path in json.loads(manifest.read())]
            except ValueError:
                logger.warning("Unreadable %s in the status export; rewriting it", EXPORT_MANIFEST)
    for path, artifact in files.items():
        _export_write(storage, path, artifact.body)
    _export_write(storage, EXPORT_MANIFEST, json.dumps(sorted(files)).encode())
    # Only files an earlier export wrote (the manifest's) are removed: the storage may hold
    # other things.
    for path in previous:
        if path not in files and path != EXPORT_MANIFEST and storage.exists(path):
            storage.delete(path)


def _export_write(storage, path: str, body: bytes) -> None:
    from django.core.files.base import ContentFile

    if storage.exists(path):
        storage.delete(path)
    storage.save(path, ContentFile(body))


def public_changed() -> None:
    """Something public changed in the current transaction: once it commits, the site is
    stale (the next request re-renders it) and the render task re-renders and exports it."""

    def stale_and_queue() -> None:
        try:
            cache.delete(FRESH_KEY)
        except Exception:
            logger.warning("The status site could not be marked stale", exc_info=True)
        from ..tasks import status_site_render

        try:
            status_site_render.delay()
        except Exception:
            logger.warning("The status site render could not be queued", exc_info=True)

    transaction.on_commit(stale_and_queue)


def site_artifact(path: str) -> Artifact | None:
    """The file at ``path`` as the public URLs serve it (``None``: no such file). Never raises
    because the database or the cache is down while a previous copy exists."""
    key = KEY + "file:" + path
    try:
        fresh = cache.get(FRESH_KEY)
        current = cache.get(key)
    except Exception:
        logger.warning("Status site cache unavailable; rendering for this request", exc_info=True)
        return site_render().get(path)
    if fresh and current is not None:
        return current
    if fresh and cache.get(INDEX_KEY) is not None:
        return None  # a fresh site without this path
    if cache.add(LOCK_KEY, 1, LOCK_SECONDS):
        try:
            files = site_render()
        except Exception:
            logger.exception("The status site could not be rendered; serving the last copy")
            # Retry after a while, not on every request while the database is down.
            cache.set(FRESH_KEY, 1, RETRY_SECONDS)
            return current
        finally:
            cache.delete(LOCK_KEY)
        _store(files)
        return files.get(path)
    if current is not None:
        return current
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if cache.get(FRESH_KEY):
            return cache.get(key)
    return None
