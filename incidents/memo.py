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
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.db.models import Model
from django.db.models.signals import post_delete, post_migrate, post_save

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["Versioned", "memos_forget"]


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
            version = cache.get(self.version_key)
            if version is None:
                version = uuid.uuid4().hex
                if not cache.add(self.version_key, version, self.seconds):
                    version = cache.get(self.version_key) or version
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

    def bump(self) -> None:
        """A new version: every process builds afresh on its next read."""
        self.memo = {}
        try:
            cache.set(self.version_key, uuid.uuid4().hex, self.seconds)
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
