"""Racing in tests: functions run in threads of their own (each with its own database
connection), released together."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connections


def in_threads(
    *functions: Callable[[], Any], timeout: float = 60, start_timeout: float | None = None
) -> list[Any]:
    """Run each function in its own thread (own database connection), all released at once by
    a barrier (waiting up to ``start_timeout``, default ``timeout``). Returns their results in
    order; re-raises the first exception; fails when a thread is still running after
    ``timeout`` (a deadlock)."""
    barrier = threading.Barrier(len(functions))
    results: list[Any] = [None] * len(functions)
    errors: list[BaseException] = []

    def run(index: int, function: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=timeout if start_timeout is None else start_timeout)
            results[index] = function()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=run, args=(i, f), name=f"racer-{i}", daemon=True)
        for i, f in enumerate(functions)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a thread is stuck (deadlock?)"
    if errors:
        raise errors[0]
    return results
