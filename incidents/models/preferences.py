"""What a person sets for themself: the time zone Vigil shows them times in."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


def validate_time_zone(value: str) -> None:
    from ..timeformat import available_zones

    if value and value not in available_zones():
        raise ValidationError(
            "%(value)s is not a time zone name; pick one such as Europe/Paris.",
            code="invalid_time_zone",
            params={"value": value},
        )


class UserPreference(models.Model):
    """One person's preferences (a row exists once they saved them)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="vigil_preference"
    )
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text="The IANA time zone every date and time is shown in for this person (admin "
        "pages, reports, messages sent to them). Blank: Vigil's default zone (VIGIL_TIME_ZONE).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "preferences"
        verbose_name_plural = "preferences"

    def __str__(self) -> str:
        return f"Preferences of {self.user}"
