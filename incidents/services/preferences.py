"""A person's own preferences (the time zone Vigil shows them times in)."""

from __future__ import annotations

from django.db import transaction

from ..errors import InvalidInput
from ..models import UserPreference
from ..timeformat import available_zones


@transaction.atomic
def user_preference_set(*, user, time_zone: str) -> UserPreference:
    """Set ``user``'s time zone ("" for Vigil's default zone). Refuses a name the tz database
    does not know (``InvalidInput``, nothing saved). Idempotent: the same zone saves nothing."""
    time_zone = (time_zone or "").strip()
    if time_zone and time_zone not in available_zones():
        raise InvalidInput({"time_zone": f"{time_zone} is not a time zone name."})
    preference, created = UserPreference.objects.select_for_update().get_or_create(
        user=user, defaults={"time_zone": time_zone}
    )
    if not created and preference.time_zone != time_zone:
        preference.time_zone = time_zone
        preference.save(update_fields=["time_zone", "updated_at"])
    return preference
