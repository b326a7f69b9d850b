"""Editing the KPI definitions and the KPI policy: validation shared by every caller, the save
with its history row naming the author, and the stored months marked for recomputation when
what they were computed from changed."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from incidents.models import SeverityLevel

from ..models import TIME_MEASURES, KpiDefinition, KpiPolicy, Measure
from .rollups import kpi_months_mark_stale

__all__ = [
    "COSMETIC_DEFINITION_FIELDS",
    "ROLLUP_POLICY_FIELDS",
    "kpi_definition_errors",
    "kpi_definition_save",
    "kpi_policy_errors",
    "kpi_policy_save",
    "recipients_parse",
]

# Fields of a definition that change how it is shown, not what its stored rollups hold.
COSMETIC_DEFINITION_FIELDS = frozenset({"name", "description", "position"})
# Fields of the policy the stored rollups depend on: the first-contact rule decides who counts
# as resolved on first contact, the time zone where each month starts and ends.
ROLLUP_POLICY_FIELDS = frozenset({"first_contact_rule", "time_zone"})


def kpi_definition_errors(
    *, measure: str | None, target: Decimal | float | None, severities: Any
) -> dict[str, str]:
    """What is wrong with these values of a definition, by field (empty: nothing). Severities
    must be a list of existing severity levels; the target must make sense for the measure: a
    time longer than zero minutes, a percentage up to 100, a score from 1 to 5."""
    errors: dict[str, str] = {}
    if severities is None:
        severities = []
    if not isinstance(severities, list) or not all(
        isinstance(level, int) and not isinstance(level, bool) for level in severities
    ):
        errors["severities"] = "Give a list of severity levels, e.g. [1] or [1, 2]."
    else:
        known = set(SeverityLevel.objects.values_list("level", flat=True))
        unknown = sorted(set(severities) - known)
        if unknown:
            errors["severities"] = (
                f"No severity level {', '.join(map(str, unknown))}: "
                f"the levels are {', '.join(map(str, sorted(known)))}."
            )
        elif len(set(severities)) != len(severities):
            errors["severities"] = "A severity level is listed twice."
    if target is not None and measure:
        value = Decimal(str(target))
        if measure in TIME_MEASURES and value <= 0:
            errors["target"] = "A time target is a number of minutes greater than zero."
        elif measure == Measure.FIRST_CONTACT and not 0 < value <= 100:
            errors["target"] = "A first-contact resolution target is a percentage (1 to 100)."
        elif measure == Measure.SATISFACTION and not 1 <= value <= 5:
            errors["target"] = "A satisfaction target is a score from 1 to 5."
    return errors


def recipients_parse(text: str) -> tuple[list[str], list[str]]:
    """The e-mail addresses of ``text`` (one per line, blank lines ignored, each once) and the
    lines that are not an address."""
    addresses: list[str] = []
    bad: list[str] = []
    for line in (text or "").splitlines():
        address = line.strip()
        if not address:
            continue
        try:
            validate_email(address)
        except ValidationError:
            bad.append(address)
            continue
        if address.lower() not in {a.lower() for a in addresses}:
            addresses.append(address)
    return addresses, bad


def kpi_policy_errors(*, time_zone: str | None, report_recipients: str | None) -> dict[str, str]:
    """What is wrong with these values of the policy, by field (empty: nothing)."""
    errors: dict[str, str] = {}
    if time_zone is not None:
        name = time_zone.strip()
        try:
            if not name:
                raise ValueError
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            errors["time_zone"] = (
                f"{time_zone!r} is not a time zone: use an IANA name such as Europe/Paris or UTC."
            )
    if report_recipients is not None:
        _, bad = recipients_parse(report_recipients)
        if bad:
            errors["report_recipients"] = (
                "Not an e-mail address: " + ", ".join(bad) + ". Give one address per line."
            )
    return errors


@transaction.atomic
def kpi_definition_save(
    *, definition: KpiDefinition, actor: Any, changed: Iterable[str] | None = None
) -> KpiDefinition:
    """Create or update ``definition`` with a history row naming ``actor``.

    ``changed`` names the fields changed (None: all, as for a new definition). Raises
    ValidationError (nothing saved) when the values do not hold. Unless only its name,
    description or position changed, every stored month is marked stale: the rollup sweep
    recomputes them within minutes, and the nightly refresh at the latest."""
    errors = kpi_definition_errors(
        measure=definition.measure, target=definition.target, severities=definition.severities
    )
    if errors:
        raise ValidationError(errors)
    definition.severities = sorted(definition.severities or [])
    definition._history_user = actor  # type: ignore[attr-defined]
    definition.save()
    changed = None if changed is None else set(changed)
    if changed is None or changed - COSMETIC_DEFINITION_FIELDS:
        kpi_months_mark_stale(months=None)
    return definition


@transaction.atomic
def kpi_policy_save(
    *, policy: KpiPolicy, actor: Any, changed: Iterable[str] | None = None
) -> KpiPolicy:
    """Save the KPI policy with a history row naming ``actor``; the report recipients are kept
    one address per line. Raises ValidationError (nothing saved) for an unknown time zone or a
    line that is not an e-mail address. A change of the first-contact rule or of the time zone
    (``changed`` None: assume both) marks every stored month stale."""
    errors = kpi_policy_errors(
        time_zone=policy.time_zone, report_recipients=policy.report_recipients
    )
    if errors:
        raise ValidationError(errors)
    policy.pk = 1
    policy.time_zone = policy.time_zone.strip()
    policy.report_recipients = "\n".join(recipients_parse(policy.report_recipients)[0])
    policy._history_user = actor  # type: ignore[attr-defined]
    policy.save()
    if changed is None or set(changed) & ROLLUP_POLICY_FIELDS:
        kpi_months_mark_stale(months=None)
    return policy
