"""``python manage.py escalate``: run one escalation sweep now and print what fired.

For operators (the beat is down, or to see what is due) and for testing with a shifted clock:
``--now 2026-11-27T15:00:00+00:00`` sweeps as if it were that time, firing what would be due
then. Safe beside a running beat: the sweep claims rows and each step fires once.
"""

from __future__ import annotations

from datetime import datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from escalation.services.timers import escalation_due, escalation_sweep


def _aware(value: str) -> datetime:
    parsed = parse_datetime(value)
    if parsed is None:
        raise CommandError(f"--now {value!r} is not an ISO 8601 date and time.")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    return parsed


class Command(BaseCommand):
    help = "Run one escalation sweep (acknowledgement timeouts and matrix steps) and print it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--now",
            type=_aware,
            default=None,
            help="Sweep as if it were this time (ISO 8601; naive times are in TIME_ZONE).",
        )

    def handle(self, *args, now: datetime | None = None, **options) -> None:
        when = now or timezone.now()
        due = escalation_due(now=when).count()
        fired = escalation_sweep(now=when)
        self.stdout.write(
            f"Sweep at {timezone.localtime(when):%Y-%m-%d %H:%M:%S %Z}: "
            f"{due} escalation(s) due, {len(fired)} step(s) fired."
        )
        for item in fired:
            self.stdout.write(f"  {item}")
