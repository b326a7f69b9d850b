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
  ``RETRY_SECONDS``); with no copy at all the URLs answer 503 (:class:`SiteUnavailable`). While
  the cache is down each process serves the copy it rendered last.
* **Per-process memory.** Each process keeps the files it fetched while the site was fresh and
  asks the cache at most once per ``VIGIL_STATUS_LOCAL_SECONDS`` whether the site is still fresh
  and still the same render (the render id :func:`_store` writes). A change published in a
  process clears that process's memory when it commits; the others see it within
  ``VIGIL_STATUS_LOCAL_SECONDS``.
* **Static export.** The render task and ``manage.py statuspage_export`` write the same files to
  the storage ``VIGIL_STATUS_EXPORT_STORAGE`` names (a Django ``STORAGES`` alias), so the page
  can be hosted apart from Vigil.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

KEY = "vigil:status:"
FRESH_KEY = KEY + "fresh"
LOCK_KEY = KEY + "lock"
INDEX_KEY = KEY + "paths"
FAILED_KEY = KEY + "failed"
# Changes with every public change: a render that saw it move was of older data.
GENERATION_KEY = KEY + "generation"
# Changes with every stored render: a process's memory of another render is out of date.
RENDER_KEY = KEY + "render"
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
    """Run every renderer in one read-only snapshot of the database (on PostgreSQL a
    REPEATABLE READ READ ONLY transaction when not already inside one); returns path -> artifact.
    Raises what the database raises (the callers decide what to serve instead)."""
    from . import renderers  # noqa: F401  (registers the built-in renderers)

    context = RenderContext(now=now or timezone.now())
    files: dict[str, Artifact] = {}
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            # READ COMMITTED would let each query see a different commit: one snapshot.
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for render in _renderers.values():
            files.update(render(context))
    return files


class SiteUnavailable(Exception):
    """No copy of the site to serve: none was ever rendered (or it was evicted) and rendering
    failed or took too long. The public URLs answer 503 with ``Retry-After``."""


# The last site this process rendered: served while the cache is down (see _without_cache).
_local: dict[str, Any] = {"files": None, "at": 0.0}
_local_lock = threading.Lock()
# After a cache error this process serves its own copy without asking the cache until then.
_cache_down: dict[str, float] = {"until": 0.0}
CACHE_RETRY_SECONDS = 5.0


def _keep_local(files: dict[str, Artifact]) -> None:
    _local["files"], _local["at"] = files, time.monotonic()


@dataclass(frozen=True)
class _Memory:
    """Files of one render (``render``: its id) this process fetched while the site was fresh,
    and when the cache last said that render is the fresh one (``checked``, monotonic)."""

    render: str | None
    files: dict[str, Artifact]
    checked: float
    epoch: int


# Replaced whole (never half-updated under a reader); ``files`` only ever gains entries.
_memory: dict[str, _Memory] = {"current": _Memory(None, {}, float("-inf"), 0)}


def _memory_clear() -> None:
    """Forget the files (a change committed in this process): the next request asks the cache.
    The epoch moves, so a request that read the cache before the change keeps nothing."""
    _memory["current"] = _Memory(None, {}, float("-inf"), _memory["current"].epoch + 1)


def _memory_keep(render: str | None, path: str, artifact: Artifact, epoch: int) -> None:
    """The cache just said ``render`` is fresh and holds ``artifact`` at ``path``."""
    memory = _memory["current"]
    if render is None or memory.epoch != epoch:
        return
    files = memory.files if memory.render == render else {}
    files[path] = artifact
    _memory["current"] = _Memory(render, files, time.monotonic(), epoch)


def _from_memory(path: str) -> Artifact | None:
    seconds = settings.VIGIL_STATUS_LOCAL_SECONDS
    memory = _memory["current"]
    if seconds <= 0 or time.monotonic() - memory.checked >= seconds:
        return None
    return memory.files.get(path)


def _store(files: dict[str, Artifact], *, fresh: bool = True) -> None:
    """Put the rendered site in the cache (without expiry: it is the copy served while the
    database is down) and, if ``fresh``, mark it fresh. Files no longer part of the site are
    deleted. The index (the set of paths) tells a missing path from an evicted file."""
    _keep_local(files)
    epoch = _memory["current"].epoch
    render = uuid.uuid4().hex
    # One write (one MSET on Redis): whoever reads this render id reads these files.
    keys = {KEY + "file:" + path: artifact for path, artifact in files.items()}
    cache.set_many({RENDER_KEY: render, **keys}, None)
    old = cache.get(INDEX_KEY) or ()
    gone = [KEY + "file:" + path for path in old if path not in files]
    if gone:
        cache.delete_many(gone)
    cache.set(INDEX_KEY, frozenset(files), None)
    cache.delete(FAILED_KEY)
    if fresh:
        cache.set(FRESH_KEY, 1, settings.VIGIL_STATUS_FRESH_SECONDS)
        if _memory["current"].epoch == epoch:
            _memory["current"] = _Memory(render, dict(files), time.monotonic(), epoch)


def _render_and_store() -> dict[str, Artifact] | None:
    """Render and store the site; ``None`` if rendering failed (then no render is tried again
    for ``RETRY_SECONDS``). A change published while rendering leaves the site stale (its
    generation moved), so the next request renders it again."""
    generation = cache.get(GENERATION_KEY)
    try:
        files = site_render()
    except Exception:
        logger.exception("The status site could not be rendered; serving the last copy")
        cache.set(FAILED_KEY, 1, RETRY_SECONDS)
        return None
    _store(files, fresh=cache.get(GENERATION_KEY) == generation)
    return files


def site_refresh(*, export: bool = True) -> dict[str, Artifact]:
    """Render the site, store it in the cache and (``export``) write the static export."""
    generation = cache.get(GENERATION_KEY)
    files = site_render()
    _store(files, fresh=cache.get(GENERATION_KEY) == generation)
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
    stale (the next request re-renders it), this process forgets its copy and the render task
    re-renders and exports it. One render task per transaction, however many changes it holds:
    the callback is registered once (a savepoint rolled back drops it, and a later change
    registers it again)."""
    if not _stale_and_queue_pending():
        transaction.on_commit(_stale_and_queue)


def _stale_and_queue() -> None:
    try:
        cache.set(GENERATION_KEY, uuid.uuid4().hex, None)
        cache.delete(FRESH_KEY)
    except Exception:
        logger.warning("The status site could not be marked stale", exc_info=True)
    _local["at"] = 0.0
    _memory_clear()
    from ..tasks import status_site_render

    try:
        status_site_render.delay()
    except Exception:
        logger.warning("The status site render could not be queued", exc_info=True)


def _stale_and_queue_pending() -> bool:
    """Whether this transaction already has :func:`_stale_and_queue` on its commit hooks.

    ``run_on_commit`` holds ``(savepoint ids, func, robust)``; a savepoint's rollback removes
    the callbacks registered inside it, and only a savepoint still open here can be rolled back
    later, which would undo this change too, so any pending one covers this change. Under a
    test case's atomic blocks (which never commit) the transaction is the outermost block the
    code itself opened: callbacks captured from an earlier one do not count."""
    conn = transaction.get_connection()
    if not conn.in_atomic_block:
        return False  # autocommit: on_commit runs the callback now
    blocks = conn.atomic_blocks
    own = next((i for i, block in enumerate(blocks) if not block._from_testcase), None)
    if own is None:
        return False
    # The outermost block opens the transaction, not a savepoint (no entry in savepoint_ids).
    offset = len(blocks) - len(conn.savepoint_ids)
    sid = conn.savepoint_ids[own - offset] if own >= offset else None
    return any(
        func is _stale_and_queue and (sid is None or sid in sids)
        for sids, func, _robust in conn.run_on_commit
    )


def site_artifact(path: str) -> Artifact | None:
    """The file at ``path`` as the public URLs serve it (``None``: no such file).

    A file this process fetched is served from its memory while the cache said, less than
    ``VIGIL_STATUS_LOCAL_SECONDS`` ago, that its render is the fresh one; otherwise a fresh
    site is served from the cache (one round trip). A stale one is re-rendered by the
    one request that takes the cache lock; meanwhile the others get the previous copy or, when
    there is none, wait for the render. When rendering fails (the database is down) the last
    copy is served and no render is tried for ``RETRY_SECONDS``. When the cache is down, this
    process's own last copy is served, re-rendered at most once per fresh period, and the
    cache is not asked again for ``CACHE_RETRY_SECONDS``.

    Raises :class:`SiteUnavailable` when there is no copy to serve.
    """
    if time.monotonic() < _cache_down["until"]:
        return _without_cache(path)
    remembered = _from_memory(path)
    if remembered is not None:
        return remembered
    try:
        return _from_cache(path)
    except SiteUnavailable:
        raise
    except Exception:
        # A cache that never answers costs each call its timeout: leave it alone for a while.
        _cache_down["until"] = time.monotonic() + CACHE_RETRY_SECONDS
        logger.warning(
            "Status site cache unavailable; serving this process's copy for the next %s s",
            CACHE_RETRY_SECONDS,
            exc_info=True,
        )
        return _without_cache(path)


def _in_index(path: str) -> bool | None:
    """Whether the last rendered site has ``path`` (``None``: no site rendered yet)."""
    index = cache.get(INDEX_KEY)
    return None if index is None else path in index


def _from_cache(path: str) -> Artifact | None:
    key = KEY + "file:" + path
    epoch = _memory["current"].epoch
    got = cache.get_many([FRESH_KEY, FAILED_KEY, RENDER_KEY, key])
    current = got.get(key)
    if FRESH_KEY in got:
        if current is not None:
            _memory_keep(got.get(RENDER_KEY), path, current, epoch)
            return current
        if _in_index(path) is False:
            return None  # a fresh site without this path
        # Never rendered, or the file was evicted from the cache: render it again.
    elif FAILED_KEY in got:
        if current is not None:
            return current
        if _in_index(path) is False:
            return None
        raise SiteUnavailable
    if cache.add(LOCK_KEY, 1, LOCK_SECONDS):
        try:
            files = _render_and_store()
        finally:
            cache.delete(LOCK_KEY)
        if files is not None:
            return files.get(path)
        if current is not None:
            return current
        raise SiteUnavailable
    if current is not None:
        return current
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)
        got = cache.get_many([LOCK_KEY, key])
        if got.get(key) is not None:
            return got[key]
        if LOCK_KEY not in got:
            if _in_index(path) is False:
                return None
            break  # the render failed, or its site lacks this file
    raise SiteUnavailable


def _without_cache(path: str) -> Artifact | None:
    files = _local["files"]
    stale = time.monotonic() - _local["at"] >= settings.VIGIL_STATUS_FRESH_SECONDS
    # One render at a time per process: the other threads serve the copy they have, or,
    # without one, wait for it.
    if (files is None or stale) and _local_lock.acquire(
        blocking=files is None, timeout=WAIT_SECONDS if files is None else -1
    ):
        try:
            files = _render_local(seen=files)
        finally:
            _local_lock.release()
    if files is None:
        raise SiteUnavailable
    return files.get(path)


def _render_local(*, seen: dict[str, Artifact] | None) -> dict[str, Artifact] | None:
    if _local["files"] is not seen:
        return _local["files"]  # another thread rendered it meanwhile
    try:
        files = site_render()
    except Exception:
        logger.exception("The status site could not be rendered; serving the last copy")
        # Not again for RETRY_SECONDS.
        _local["at"] = time.monotonic() - settings.VIGIL_STATUS_FRESH_SECONDS + RETRY_SECONDS
        return seen
    _keep_local(files)
    return files
