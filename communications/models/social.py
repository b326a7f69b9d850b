"""Social media posts for widespread outages (procedure §5.2), drafted from a published status
update and approved before they are sent."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from incidents.models import Incident

from .status import StatusUpdate

__all__ = ["SocialPost", "SocialPostState"]


class SocialPostState(models.TextChoices):
    DRAFT = "draft", "Draft"
    APPROVED = "approved", "Approved"
    SENT = "sent", "Sent"
    DISCARDED = "discarded", "Discarded"


class SocialPost(models.Model):
    """A post for the company's social account about a widespread outage (§5.2), drafted from
    a published status update, approved like one, and sent through the outbox's social
    channel."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="social_posts")
    status_update = models.ForeignKey(
        StatusUpdate, null=True, blank=True, on_delete=models.SET_NULL, related_name="social_posts"
    )
    body = models.TextField(max_length=500)
    state = models.CharField(
        max_length=10, choices=SocialPostState.choices, default=SocialPostState.DRAFT
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                "status_update",
                condition=Q(status_update__isnull=False),
                name="social_post_once_per_update",
            )
        ]

    def __str__(self) -> str:
        return f"Social post on {self.incident}"
