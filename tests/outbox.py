"""What the outbox would hand the broker, kept instead of published."""

from __future__ import annotations


def published_tasks(
    monkeypatch, *, countdowns: list[float | None] | None = None
) -> tuple[list[tuple[list[int], str]], list[tuple[int, str]]]:
    """Stand in for the send tasks' ``apply_async``: returns the lists the batch tasks (their
    ids and queue) and the one-row tasks (its id and queue) are appended to, in order. With
    ``countdowns``, each publish's countdown (None without one) is appended to it as well, in
    the order of all publishes."""
    from escalation import tasks

    batches: list[tuple[list[int], str]] = []
    singles: list[tuple[int, str]] = []

    def keeper(found: list):
        def apply_async(args, queue, **options):
            found.append((args[0], queue))
            if countdowns is not None:
                countdowns.append(options.get("countdown"))

        return apply_async

    monkeypatch.setattr(tasks.notification_send_batch_task, "apply_async", keeper(batches))
    monkeypatch.setattr(tasks.notification_send_task, "apply_async", keeper(singles))
    return batches, singles
