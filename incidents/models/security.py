"""Vigil watching itself (§7.1 security monitoring): runs of failed logins over the §7.2
"Failed Logins" threshold and the security incident each run opened."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from ..timeformat import when
from .incident import Incident


class LoginFailureEpisode(models.Model):
    """Minutes with failed logins over the threshold that feed one security incident.

    At most one episode is open at a time (a partial UNIQUE constraint), so processes that
    cross the threshold at the same moment open one incident between them. An episode whose
    incident is no longer active is closed by the next minute over the threshold, which then
    opens a new one. Written only by ``incidents.services.security``.
    """

    incident = models.OneToOneField(
        Incident, on_delete=models.PROTECT, related_name="login_failure_episode"
    )
    is_open = models.BooleanField(default=True)
    first_window = models.DateTimeField(help_text="Start of the first minute over the threshold.")
    last_window = models.DateTimeField(help_text="Start of the latest minute over the threshold.")
    windows = models.PositiveIntegerField(default=1, help_text="Minutes over the threshold.")
    failures = models.PositiveIntegerField(
        default=0, help_text="Failed logins counted in those minutes."
    )
    last_window_failures = models.PositiveIntegerField(default=0)
    peak = models.PositiveIntegerField(default=0, help_text="Most failed logins in one minute.")
    last_window_by_channel = models.JSONField(
        default=dict,
        blank=True,
        help_text="Failed logins per door (admin, API) in the latest minute.",
    )
    addresses = models.JSONField(default=list, blank=True, help_text="Source addresses seen.")
    usernames = models.JSONField(default=list, blank=True, help_text="Usernames tried.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-first_window", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_open"],
                condition=Q(is_open=True),
                name="login_failure_episode_one_open",
            ),
        ]

    def __str__(self) -> str:
        return f"Failed logins from {when(self.first_window)} ({self.failures})"
