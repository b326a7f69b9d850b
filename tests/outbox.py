"""What the outbox would hand the broker, kept instead of published."""

from __future__ import annotations


def published_tasks(monkeypatch) -> tuple[list[tuple[list[int], str]], list[tuple[int, str]]]:
    """Stand in for the send tasks' ``apply_async``: returns the lists the batch tasks (their
    ids and queue) and the one-row tasks (its id and queue) are appended to, in order."""
    from escalation import tasks

    batches: list[tuple[list[int], str]] = []
    singles: list[tuple[int, str]] = []
    monkeypatch.setattr(
        tasks.notification_send_batch_task,
        "apply_async",
        lambda args, queue, **kw: batches.append((args[0], queue)),
    )
    monkeypatch.setattr(
        tasks.notification_send_task,
        "apply_async",
        lambda args, queue, **kw: singles.append((args[0], queue)),
    )
    return batches, singles
