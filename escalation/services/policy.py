"""Writes of the escalation matrix (§5.1): its steps, each "after this long since detection,
an unresolved incident of this severity escalates to that level".

The admin calls these (and any future API would): the same permission check, the same
validation (``full_clean``) and an audited history row naming the actor. Escalations already
running keep the policy snapshot they took when they started; a change applies to incidents
whose escalation starts afterwards.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction

from incidents.errors import InvalidInput
from incidents.services.catalog import (
    policy_row_delete,
    policy_row_update,
    require_policy_perm,
    validated_save,
)

from ..models import EscalationStep

STEP_FIELDS = ("severity", "elapsed", "target")


def _check(fields: dict[str, Any]) -> None:
    unknown = sorted(set(fields) - set(STEP_FIELDS))
    if unknown:
        raise InvalidInput({name: "This field cannot be changed here." for name in unknown})
    elapsed = fields.get("elapsed")
    if isinstance(elapsed, timedelta) and elapsed < timedelta(0):
        raise InvalidInput({"elapsed": "The time since detection cannot be negative."})


@transaction.atomic
def escalation_step_create(*, actor: Any, source: str, **fields: Any) -> EscalationStep:
    """Add a step to the escalation matrix. Needs ``escalation.add_escalationstep``. Not
    idempotent: a second step at the same severity and time is refused (InvalidInput)."""
    require_policy_perm(actor, "escalation.add_escalationstep", "add escalation steps")
    _check(fields)
    step = EscalationStep(**fields)
    validated_save(step, actor=actor, reason=f"created via {source}")
    return step


@transaction.atomic
def escalation_step_update(
    *, step: EscalationStep, actor: Any, source: str, **changes: Any
) -> EscalationStep:
    """Change a step's severity, time or level. Needs ``escalation.change_escalationstep``.
    Idempotent: no change, no write."""
    require_policy_perm(actor, "escalation.change_escalationstep", "change escalation steps")
    _check(changes)
    return policy_row_update(step, actor=actor, source=source, changes=changes)


@transaction.atomic
def escalation_step_delete(*, step: EscalationStep, actor: Any, source: str) -> None:
    """Remove a step from the escalation matrix. Needs ``escalation.delete_escalationstep``.
    Events that already fired for it stay (they name the step by its key)."""
    require_policy_perm(actor, "escalation.delete_escalationstep", "delete escalation steps")
    policy_row_delete(step, actor=actor, source=source, in_use="This step is in use.")


__all__ = ["escalation_step_create", "escalation_step_delete", "escalation_step_update"]
