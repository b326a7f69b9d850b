"""Policy data read on every new incident, kept in each process under a version token.

An alert storm opens hundreds of incidents a minute, and each one reads the same rows: the
integration's routing rules, the alert rules, the maintenance windows, the severity levels, the
priority matrix. They change a few times a month. A :class:`Versioned` keeps what was built
from them in each process (web, worker, beat) under a version token held in the shared cache
(Redis, or the embedded setup's file cache), so an unchanged policy costs one cache read and no
query.

The token changes whenever a transaction that saved or deleted a row of one of its models
commits: the models' ``post_save``/``post_delete`` register the change with ``on_commit``, and
every process then sees the new token. Until it commits, the changing transaction builds from
the database (it must see its own changes, and nobody else may); a rollback discards the change
and leaves the token alone. A migration changes every token. A change made behind the ORM's
back (raw SQL, ``queryset.update()``, which the conventions forbid on these audited models)
applies within ``seconds``, when the token expires. If the cache is down, everything is built
from the database.

Inside one unit of work (a worker's task, a web request: :func:`tokens_scope`) the tokens of
every :class:`Versioned` are read together, with one ``get_many`` (one Redis ``MGET``), at the
first read, and reused for at most :data:`SCOPE_TOKENS_SECONDS`: an incident opened by an alert
reads its policy with one round trip instead of one per read. A change another process commits
meanwhile applies from the next unit of work (or after those seconds); a change this process
commits applies at once, its own token being replaced on commit.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.db.models import Model
from django.db.models.signals import post_delete, post_migrate, post_save

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = [
    "SCOPE_TOKENS_SECONDS",
    "Versioned",
    "memos_forget",
    "tokens_scope",
    "tokens_scope_enter",
    "tokens_scope_exit",
    "tokens_scopes_connect",
]

# How long, at most, a unit of work reuses the version tokens it read (a long task, such as a
# sweep of many due incidents, reads them again).
SCOPE_TOKENS_SECONDS = 2.0


class _Scope(threading.local):
    """This thread's unit of work: how deeply scopes nest, the tokens read for it (key ->
    token) and when they were read."""

    depth = 0
    tokens: dict[str, str] | None = None
    read_at = 0.0


_scope = _Scope()


class Versioned:
    """Values built from the rows of ``models``, kept per process under a version token.

    ``get(key, build)`` returns what ``build()`` returned for ``key`` under the current token
    (building it again after any committed change of one of ``models``). With ``shared`` the
    built value (which must then be picklable) is also kept in the shared cache under the
    token, so a process that has not built it reads it there instead of from the database.
    Callers must not change what they get back: it is shared by every caller in the process.
    """

    instances: list[Versioned] = []

    def __init__(self, name: str, *, models: Iterable[type[Model]], seconds: int = 300) -> None:
        self.name = name
        self.version_key = f"vigil:{name}:version"
        self.value_key = f"vigil:{name}:value:"
        self.seconds = seconds
        # key -> (token, value); replaced whole on a bump, so threads never see half of it.
        self.memo: dict[str, tuple[str, Any]] = {}
        # One bound method, so that a pending bump is recognised among on_commit callbacks.
        self.bump_on_commit = self.bump
        for model in models:
            for signal in (post_save, post_delete):
                signal.connect(
                    self._changed,
                    sender=model,
                    weak=False,
                    dispatch_uid=f"vigil.memo.{name}.{signal is post_save}.{model.__name__}",
                )
        post_migrate.connect(self._migrated, weak=False, dispatch_uid=f"vigil.memo.{name}")
        Versioned.instances.append(self)

    def dirty(self) -> bool:
        """Whether this connection's transaction changed one of the rows and has not
        committed yet."""
        return any(func is self.bump_on_commit for _, func, *_ in connection.run_on_commit)

    def get(self, key: str, build: Callable[[], T], *, shared: bool = False) -> T:
        if self.dirty():
            return build()
        try:
            version = self._version()
            hit = self.memo.get(key)
            if hit is not None and hit[0] == version:
                return hit[1]
            # The token is read before the rows: a change committed meanwhile moves the
            # token, so what is kept here under the old one is never read again.
            value = cache.get(self.value_key + key + ":" + version) if shared else None
        except Exception:
            logger.warning("The cache is unavailable; reading %s", self.name, exc_info=True)
            return build()
        if value is None:
            value = build()
            if shared:
                try:
                    cache.set(self.value_key + key + ":" + version, value, self.seconds)
                except Exception:
                    logger.warning("The cache is unavailable; %s not kept", self.name)
        self.memo[key] = (version, value)
        return value

    def _version(self) -> str:
        """The current token: from this unit of work's tokens if there is one (all read at
        once), otherwise from the cache; a missing token is created."""
        tokens = _scope.tokens if _scope.depth else None
        if _scope.depth and (
            tokens is None or time.monotonic() - _scope.read_at > SCOPE_TOKENS_SECONDS
        ):
            tokens = cache.get_many([v.version_key for v in Versioned.instances])
            _scope.tokens, _scope.read_at = tokens, time.monotonic()
        version = tokens.get(self.version_key) if tokens is not None else None
        if version is None:
            version = cache.get(self.version_key)
            if version is None:
                version = uuid.uuid4().hex
                if not cache.add(self.version_key, version, self.seconds):
                    version = cache.get(self.version_key) or version
            if tokens is not None:
                tokens[self.version_key] = version
        return version

    def bump(self) -> None:
        """A new version: every process builds afresh on its next read (this one at once)."""
        self.memo = {}
        version = uuid.uuid4().hex
        if _scope.tokens is not None:
            _scope.tokens[self.version_key] = version
        try:
            cache.set(self.version_key, version, self.seconds)
        except Exception:
            logger.warning(
                "The cache is unavailable; the change of %s applies when it returns", self.name
            )

    def _changed(self, *, using: str | None = None, **kwargs: Any) -> None:
        transaction.on_commit(self.bump_on_commit, using=using or DEFAULT_DB_ALIAS)

    def _migrated(self, **kwargs: Any) -> None:
        self.bump()


def memos_forget() -> None:
    """Forget what this process keeps (the next read of each asks the shared token again)."""
    for versioned in Versioned.instances:
        versioned.memo = {}
    _scope.tokens = None


def tokens_scope_enter(**kwargs: Any) -> None:
    """A unit of work begins (a task, a request): its first read takes every token at once.
    Nested units share the outer one's tokens."""
    if not _scope.depth:
        _scope.tokens = None
    _scope.depth += 1


def tokens_scope_exit(**kwargs: Any) -> None:
    """The unit of work ends: the next one reads the tokens again."""
    _scope.depth = max(0, _scope.depth - 1)
    if not _scope.depth:
        _scope.tokens = None


@contextmanager
def tokens_scope() -> Iterator[None]:
    """One unit of work (a request, a management command's run, a script's), as a task is:
    :func:`tokens_scope_enter` and :func:`tokens_scope_exit` are connected to its signals."""
    tokens_scope_enter()
    try:
        yield
    finally:
        tokens_scope_exit()


def tokens_scopes_connect() -> None:
    """Make every Celery task a unit of work (from ``AppConfig.ready``; a web request is one
    through ``incidents.middleware.PolicyTokensMiddleware``)."""
    from celery.signals import task_postrun, task_prerun

    for signal, receiver in ((task_prerun, tokens_scope_enter), (task_postrun, tokens_scope_exit)):
        signal.connect(receiver, weak=False, dispatch_uid=f"vigil.memo.{receiver.__name__}")
