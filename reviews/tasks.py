"""Celery tasks of the reviews app: thin wrappers that call one service each."""

from __future__ import annotations

from celery import shared_task


@shared_task(
    name="reviews.documentation_sweep",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
)
def documentation_sweep_task() -> int:
    """Remind incident managers of incident reports coming due and record the misses of the
    48-hour documentation rule (beat). Safe to run twice at once: clocks are claimed with SKIP
    LOCKED and the reminder and the miss are recorded on the claimed row."""
    from .services.documentation import documentation_sweep

    return len(documentation_sweep(time_budget=35))


@shared_task(
    name="reviews.action_item_reminder_sweep",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
)
def action_item_reminder_sweep_task() -> int:
    """Remind action items' owners before, on and after the due date (beat). Safe to run twice
    at once: items are claimed with SKIP LOCKED and each reminder is recorded on the claimed row
    (and keyed in the outbox), so it is sent once."""
    from .services.action_reminders import action_item_reminder_sweep

    return len(action_item_reminder_sweep(time_budget=35))


@shared_task(
    name="reviews.review_overdue_sweep",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
)
def review_overdue_sweep_task() -> int:
    """Flag the booked reviews not held by the end of their due date, record it on the incident
    and remind the facilitator (beat). Safe to run twice at once: reviews are claimed with SKIP
    LOCKED and flagged on the claimed row, so each is flagged and reminded once."""
    from .services.overdue import reviews_overdue_sweep

    return reviews_overdue_sweep()
