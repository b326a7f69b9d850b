"""Customers and their contacts (§5.2 "registered users affected", "enterprise customers with SLA
commitments"): created, edited and deleted by staff in the admin or through the API, and imported
from one CSV file.

Every service checks the role permission (``communications.add_customer`` ...), validates all of
its input before it writes anything (an :class:`~incidents.errors.InvalidInput` naming each bad
field: an invalid or oversized e-mail address, an unknown service, an unknown account owner, a
text over its limit), and saves with a history record naming the actor and the source.

The CSV import is in :mod:`.customers_csv` (the file's format and the export in
:mod:`.customers_csv_format`); it checks each cell with the helpers here, so a file and a form
refuse the same values in the same words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from incidents.errors import InvalidInput
from incidents.models import Service
from incidents.services.common import audited_delete, audited_save

from ..errors import require
from ..models import Customer, CustomerContact, CustomerPlan

__all__ = [
    "customer_contact_add",
    "customer_contact_delete",
    "customer_contact_update",
    "customer_create",
    "customer_delete",
    "customer_update",
]

CUSTOMER_LIMITS = {"name": 200, "external_id": 100, "sla_terms": 300, "notes": 10_000}
CONTACT_LIMITS = {"name": 200, "email": 254, "phone": 40, "title": 120}
CUSTOMER_FIELDS = {
    "name",
    "external_id",
    "plan",
    "has_sla",
    "sla_terms",
    "account_owner",
    "services",
    "notes",
}
CONTACT_FIELDS = {"name", "email", "phone", "title", "incident_email"}
PHONE = re.compile(r"[0-9+().\-/ x]*")
MAX_CONTACTS = 500

TRUE = {"yes", "y", "true", "1", "on", "x"}
FALSE = {"no", "n", "false", "0", "off"}
# --- checking input ----------------------------------------------------------------------------


class _Bad(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _text(value: Any, *, limit: int, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _Bad("Expected text.")
    value = value.strip()
    if "\x00" in value:
        raise _Bad("Null characters are not allowed.")
    if required and not value:
        raise _Bad("This field is required.")
    if len(value) > limit:
        raise _Bad(f"At most {limit} characters (this has {len(value)}).")
    return value


def _email(value: Any) -> str:
    value = _text(value, limit=CONTACT_LIMITS["email"], required=True)
    try:
        validate_email(value)
    except ValidationError:
        raise _Bad(f"{value!r} is not a valid e-mail address.") from None
    return value


def _phone(value: Any) -> str:
    value = _text(value, limit=CONTACT_LIMITS["phone"])
    if value and not (PHONE.fullmatch(value) and any(c.isdigit() for c in value)):
        raise _Bad("A phone number: digits, spaces and + ( ) - . / x only.")
    return value


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value or "").strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise _Bad("Expected yes or no.")


def _plan(value: Any) -> str:
    text = str(value or "").strip().lower()
    if text not in CustomerPlan.values:
        raise _Bad(f"One of: {', '.join(CustomerPlan.values)}.")
    return text


def _owner(value: Any) -> Any:
    """An active member of staff, given as a user or by username or e-mail address."""
    User = get_user_model()
    if value is None or value == "":
        return None
    if isinstance(value, User):
        user = value
    else:
        text = _text(value, limit=254)
        if not text:
            return None
        user = User.objects.filter(username__iexact=text).first()
        if user is None:
            by_email = list(User.objects.filter(email__iexact=text)[:2])
            if len(by_email) > 1:
                raise _Bad(f"More than one user has the address {text!r}; give the username.")
            user = by_email[0] if by_email else None
        if user is None:
            raise _Bad(f"Unknown user {text!r}.")
    if not (user.is_active and user.is_staff):
        raise _Bad(f"{user.get_username()} is not an active member of staff.")
    return user


class _Services:
    """Services by slug or name (case-insensitive), loaded once."""

    def __init__(self) -> None:
        self._by_key: dict[str, Service] | None = None

    def _load(self) -> dict[str, Service]:
        if self._by_key is None:
            self._by_key = {}
            for service in Service.objects.all():
                self._by_key.setdefault(service.name.lower(), service)
            for service in Service.objects.all():
                self._by_key[service.slug.lower()] = service
        return self._by_key

    def resolve(self, values: Any) -> list[Service]:
        if values is None:
            return []
        if isinstance(values, str):
            values = [v for v in re.split(r"[;|]", values)]
        found: dict[int, Service] = {}
        unknown: list[str] = []
        for value in values:
            if isinstance(value, Service):
                found[value.pk] = value
                continue
            if not isinstance(value, str):
                raise _Bad("Expected service slugs or names.")
            key = value.strip().lower()
            if not key:
                continue
            service = self._load().get(key)
            if service is None:
                unknown.append(value.strip())
            else:
                found[service.pk] = service
        if unknown:
            raise _Bad(f"Unknown services: {', '.join(unknown[:10])}.")
        return list(found.values())


def _customer_value(name: str, value: Any, services: _Services) -> Any:
    if name in CUSTOMER_LIMITS:
        return _text(value, limit=CUSTOMER_LIMITS[name], required=name == "name")
    if name == "plan":
        return _plan(value)
    if name == "has_sla":
        return _bool(value)
    if name == "account_owner":
        return _owner(value)
    if name == "services":
        return services.resolve(value)
    raise _Bad("This field cannot be changed here.")


def _contact_value(name: str, value: Any) -> Any:
    if name == "email":
        return _email(value)
    if name == "phone":
        return _phone(value)
    if name == "incident_email":
        return _bool(value)
    if name in CONTACT_LIMITS:
        return _text(value, limit=CONTACT_LIMITS[name])
    raise _Bad("This field cannot be changed here.")


def _clean(values: dict[str, Any], check, prefix: str = "") -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, value in values.items():
        try:
            cleaned[name] = check(name, value)
        except _Bad as bad:
            errors[prefix + name] = bad.message
    if errors:
        raise InvalidInput(errors)
    return cleaned


def _check_unique(*, name: str | None, external_id: str | None, pk: int | None) -> None:
    others = Customer.objects.exclude(pk=pk) if pk else Customer.objects.all()
    errors = {}
    if name is not None and others.filter(name__iexact=name).exists():
        errors["name"] = f"A customer named {name!r} already exists."
    if external_id and others.filter(external_id=external_id).exists():
        errors["external_id"] = f"Another customer has the external id {external_id!r}."
    if errors:
        raise InvalidInput(errors)


def _opt_out_time(contact: CustomerContact) -> None:
    if contact.incident_email:
        contact.opted_out_at = None
    elif contact.opted_out_at is None:
        contact.opted_out_at = timezone.now()


def _save_unique(instance: Any, *, actor: Any, reason: str, what: str) -> None:
    """Save, turning a unique constraint lost to a concurrent writer into a 400."""
    try:
        with transaction.atomic():
            audited_save(instance, actor=actor, reason=reason)
    except IntegrityError:
        raise InvalidInput({what: "Saved by someone else meanwhile; already exists."}) from None


# --- customers ---------------------------------------------------------------------------------


@transaction.atomic
def customer_create(
    *,
    actor: Any,
    source: str,
    name: str,
    external_id: str = "",
    plan: str = CustomerPlan.STANDARD,
    has_sla: bool = False,
    sla_terms: str = "",
    account_owner: Any = None,
    services: Iterable[Any] = (),
    notes: str = "",
    contacts: Iterable[dict[str, Any]] = (),
) -> Customer:
    """Add a customer, with its services and (optionally) its contacts (dicts of
    :func:`customer_contact_add`'s fields). Needs ``communications.add_customer`` (and
    ``add_customercontact`` with contacts). All input is checked before anything is written;
    a refusal writes nothing. Not idempotent: names and external ids are unique, so a second
    call with the same name is refused."""
    require(actor, "communications.add_customer", "add customers")
    contacts = list(contacts)
    if contacts:
        require(actor, "communications.add_customercontact", "add customer contacts")
    resolver = _Services()
    cleaned = _clean(
        {
            "name": name,
            "external_id": external_id,
            "plan": plan,
            "has_sla": has_sla,
            "sla_terms": sla_terms,
            "account_owner": account_owner,
            "services": services,
            "notes": notes,
        },
        lambda n, v: _customer_value(n, v, resolver),
    )
    if len(contacts) > MAX_CONTACTS:
        raise InvalidInput({"contacts": f"At most {MAX_CONTACTS} contacts at once."})
    cleaned_contacts = []
    seen: dict[str, int] = {}
    for index, contact in enumerate(contacts):
        if not isinstance(contact, dict):
            raise InvalidInput({f"contacts.{index}": "Expected an object."})
        unknown = sorted(set(contact) - CONTACT_FIELDS)
        if unknown:
            raise InvalidInput({f"contacts.{index}.{n}": "Unknown field." for n in unknown})
        values = {"email": contact.get("email"), **contact}
        one = _clean(values, _contact_value, prefix=f"contacts.{index}.")
        key = one["email"].lower()
        if key in seen:
            raise InvalidInput(
                {f"contacts.{index}.email": f"The same address as contact {seen[key]}."}
            )
        seen[key] = index
        cleaned_contacts.append(one)
    _check_unique(name=cleaned["name"], external_id=cleaned["external_id"], pk=None)

    services_list = cleaned.pop("services")
    customer = Customer(**cleaned)
    reason = f"created ({source})"
    _save_unique(customer, actor=actor, reason=reason, what="name")
    if services_list:
        customer.services.set(services_list)
    for values in cleaned_contacts:
        contact = CustomerContact(customer=customer, **values)
        _opt_out_time(contact)
        audited_save(contact, actor=actor, reason=reason)
    return customer


@transaction.atomic
def customer_update(*, customer: Customer, actor: Any, source: str, **changes: Any) -> Customer:
    """Edit a customer's fields (``services`` replaces the list). Needs
    ``communications.change_customer``. Refusals change nothing. Idempotent: unchanged values
    write nothing."""
    unknown = sorted(set(changes) - CUSTOMER_FIELDS)
    if unknown:
        raise InvalidInput({n: "This field cannot be changed here." for n in unknown})
    require(actor, "communications.change_customer", "change customers")
    resolver = _Services()
    cleaned = _clean(changes, lambda n, v: _customer_value(n, v, resolver))
    locked = Customer.objects.select_for_update().get(pk=customer.pk)
    changed: list[str] = []
    new_services = cleaned.pop("services", None)
    for name, value in cleaned.items():
        if getattr(locked, name) != value:
            setattr(locked, name, value)
            changed.append(name)
    if new_services is not None:
        current = set(locked.services.values_list("pk", flat=True))
        if current != {s.pk for s in new_services}:
            changed.append("services")
    if not changed:
        return locked
    _check_unique(
        name=locked.name if "name" in changed else None,
        external_id=locked.external_id if "external_id" in changed else None,
        pk=locked.pk,
    )
    if "services" in changed:
        # One history record for the fields and the services, with the actor (see below).
        locked.skip_history_when_saving = True
        try:
            locked.services.set(new_services)
        finally:
            del locked.skip_history_when_saving
    _save_unique(
        locked, actor=actor, reason=f"updated {', '.join(changed)} ({source})", what="name"
    )
    return locked


@transaction.atomic
def customer_delete(*, customer: Customer, actor: Any, source: str) -> None:
    """Delete a customer and its contacts. Needs ``communications.delete_customer``. Refused
    (400) while a direct-contact task names it: that is the incident's record."""
    require(actor, "communications.delete_customer", "delete customers")
    locked = Customer.objects.select_for_update().filter(pk=customer.pk).first()
    if locked is None:
        return
    if locked.direct_contacts.exists():
        raise InvalidInput(
            {"customer": f"{locked} has direct-contact tasks on incidents; it cannot be deleted."}
        )
    for contact in locked.contacts.all():
        audited_delete(contact, actor=actor, reason=f"customer deleted ({source})")
    audited_delete(locked, actor=actor, reason=f"deleted ({source})")


# --- contacts ----------------------------------------------------------------------------------


def _check_contact_unique(*, customer: Customer, email: str, pk: int | None) -> None:
    others = CustomerContact.objects.filter(customer=customer, email__iexact=email)
    if pk:
        others = others.exclude(pk=pk)
    if others.exists():
        raise InvalidInput({"email": f"{customer} already has a contact with the address {email}."})


@transaction.atomic
def customer_contact_add(
    *,
    customer: Customer,
    actor: Any,
    source: str,
    email: str,
    name: str = "",
    phone: str = "",
    title: str = "",
    incident_email: bool = True,
) -> CustomerContact:
    """Add a contact to a customer. Needs ``communications.add_customercontact``. One contact
    per address and customer (a second is refused, 400)."""
    require(actor, "communications.add_customercontact", "add customer contacts")
    cleaned = _clean(
        {
            "email": email,
            "name": name,
            "phone": phone,
            "title": title,
            "incident_email": incident_email,
        },
        _contact_value,
    )
    Customer.objects.select_for_update().get(pk=customer.pk)
    _check_contact_unique(customer=customer, email=cleaned["email"], pk=None)
    contact = CustomerContact(customer=customer, **cleaned)
    _opt_out_time(contact)
    _save_unique(contact, actor=actor, reason=f"created ({source})", what="email")
    return contact


@transaction.atomic
def customer_contact_update(
    *, contact: CustomerContact, actor: Any, source: str, **changes: Any
) -> CustomerContact:
    """Edit a contact. Needs ``communications.change_customercontact``. Turning
    ``incident_email`` off records when the contact opted out. Idempotent."""
    unknown = sorted(set(changes) - CONTACT_FIELDS)
    if unknown:
        raise InvalidInput({n: "This field cannot be changed here." for n in unknown})
    require(actor, "communications.change_customercontact", "change customer contacts")
    cleaned = _clean(changes, _contact_value)
    locked = CustomerContact.objects.select_for_update().get(pk=contact.pk)
    changed = [n for n, v in cleaned.items() if getattr(locked, n) != v]
    if not changed:
        return locked
    for name in changed:
        setattr(locked, name, cleaned[name])
    if "email" in changed:
        _check_contact_unique(customer=locked.customer, email=locked.email, pk=locked.pk)
    _opt_out_time(locked)
    _save_unique(
        locked, actor=actor, reason=f"updated {', '.join(changed)} ({source})", what="email"
    )
    return locked


@transaction.atomic
def customer_contact_delete(*, contact: CustomerContact, actor: Any, source: str) -> None:
    """Delete a contact. Needs ``communications.delete_customercontact``."""
    require(actor, "communications.delete_customercontact", "delete customer contacts")
    audited_delete(contact, actor=actor, reason=f"deleted ({source})")
