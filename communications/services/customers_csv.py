"""Customers from CSV: :func:`customers_import` creates or updates customers and their contacts
from one file, all or nothing (one bad row refuses the file with every row's errors, nothing
written; a dry run reports what would change). The file's format, and the export that writes
customers in it (so exporting and importing again changes nothing), are in
:mod:`.customers_csv_format`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models.functions import Lower

from incidents.models import Service
from incidents.services.common import audited_save

from ..errors import require
from ..models import Customer, CustomerContact
from .customers import (
    _Bad,
    _contact_value,
    _customer_value,
    _opt_out_time,
    _owner,
    _Services,
)
from .customers_csv_format import (
    CONTACT_COLUMNS,
    CUSTOMER_COLUMNS,
    ImportRejected,
    cell,
    decode,
    read,
)

__all__ = ["ImportResult", "ImportRow", "customers_import"]

MAX_REPORTED_ERRORS = 200


@dataclass
class ImportRow:
    """What the import does (or would do) with one row of the file."""

    row: int
    customer: str
    customer_action: str
    contact: str = ""
    contact_action: str = ""


@dataclass
class ImportResult:
    """What an import did, or with ``dry_run`` would do."""

    dry_run: bool
    rows: int = 0
    customers_created: int = 0
    customers_updated: int = 0
    customers_unchanged: int = 0
    contacts_created: int = 0
    contacts_updated: int = 0
    contacts_unchanged: int = 0
    warnings: list[str] = field(default_factory=list)
    preview: list[ImportRow] = field(default_factory=list)

    def summary(self) -> str:
        verb = "would be" if self.dry_run else "were"
        return (
            f"{self.rows} rows: customers {self.customers_created} created, "
            f"{self.customers_updated} updated, {self.customers_unchanged} unchanged; contacts "
            f"{self.contacts_created} created, {self.contacts_updated} updated, "
            f"{self.contacts_unchanged} unchanged ({verb} written)."
        )


@dataclass
class _Contact:
    row: int
    values: dict[str, Any]
    existing: CustomerContact | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    action: str = ""


@dataclass
class _Group:
    """One customer of the file: its fields as the rows give them, its contacts."""

    row: int
    values: dict[str, Any] = field(default_factory=dict)
    given_in: dict[str, int] = field(default_factory=dict)
    services: dict[int, Service] | None = None
    contacts: dict[str, _Contact] = field(default_factory=dict)
    rows: list[tuple[int, str]] = field(default_factory=list)
    existing: Customer | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    action: str = ""


def _shown(value: Any) -> str:
    return value.get_username() if hasattr(value, "get_username") else str(value)


def _plan_groups(
    header: list[str], records: list[tuple[int, list[str]]]
) -> tuple[list[_Group], list[tuple[int, str, str]]]:
    """Check each row and gather the rows by customer (by external id, else by name)."""
    problems: list[tuple[int, str, str]] = []
    resolver = _Services()
    owners: dict[str, Any] = {}
    groups: list[_Group] = []
    by_ext: dict[str, _Group] = {}
    by_name: dict[str, _Group] = {}

    for number, record in records:
        if len(record) > len(header):
            problems.append((number, "", f"{len(record)} cells for {len(header)} columns."))
            continue
        cells = {h: cell(v) for h, v in zip(header, record, strict=False)}
        row_problems: list[tuple[int, str, str]] = []
        customer: dict[str, Any] = {}
        for column, name in CUSTOMER_COLUMNS.items():
            if column not in cells or (not cells[column] and column != "customer"):
                continue
            try:
                if name == "account_owner":
                    key = cells[column].lower()
                    if key not in owners:
                        owners[key] = _owner(cells[column])
                    customer[name] = owners[key]
                else:
                    customer[name] = _customer_value(name, cells[column], resolver)
            except _Bad as bad:
                row_problems.append((number, column, bad.message))
        services = None
        if cells.get("services"):
            try:
                services = resolver.resolve(cells["services"])
            except _Bad as bad:
                row_problems.append((number, "services", bad.message))
        contact: dict[str, Any] = {}
        for column, name in CONTACT_COLUMNS.items():
            if cells.get(column):
                try:
                    contact[name] = _contact_value(name, cells[column])
                except _Bad as bad:
                    row_problems.append((number, column, bad.message))
        if (
            contact
            and "email" not in contact
            and not any(p[1] == "contact_email" for p in row_problems)
        ):
            row_problems.append((number, "contact_email", "A contact needs an e-mail address."))
        if row_problems:
            problems.extend(row_problems)
            continue

        name = customer["name"]
        ext = customer.get("external_id", "")
        group_by_ext = by_ext.get(ext) if ext else None
        group_by_name = by_name.get(name.lower())
        if group_by_ext and group_by_name and group_by_ext is not group_by_name:
            problems.append(
                (
                    number,
                    "customer",
                    f"External id {ext!r} is customer {group_by_ext.values['name']!r} "
                    f"(row {group_by_ext.row}), and {name!r} is another customer "
                    f"(row {group_by_name.row}).",
                )
            )
            continue
        group = group_by_ext or group_by_name
        if group is None:
            group = _Group(row=number)
            groups.append(group)
        conflict = False
        for key, value in customer.items():
            if key in group.values:
                old = group.values[key]
                same = old.lower() == value.lower() if key == "name" else old == value
                if not same:
                    column = next(c for c, n in CUSTOMER_COLUMNS.items() if n == key)
                    problems.append(
                        (
                            number,
                            column,
                            f"Differs from row {group.given_in[key]} for the same customer "
                            f"({_shown(old)}).",
                        )
                    )
                    conflict = True
            else:
                group.values[key] = value
                group.given_in[key] = number
        if conflict:
            continue
        if services is not None:
            group.services = group.services or {}
            group.services.update({s.pk: s for s in services})
        if group.values.get("external_id"):
            by_ext[group.values["external_id"]] = group
        by_name[group.values["name"].lower()] = group
        email = contact.get("email", "")
        if email:
            key = email.lower()
            if key in group.contacts:
                problems.append(
                    (
                        number,
                        "contact_email",
                        f"{email} is listed twice for this customer (row "
                        f"{group.contacts[key].row}).",
                    )
                )
                continue
            group.contacts[key] = _Contact(row=number, values=contact)
        group.rows.append((number, email))
    return groups, problems


def _match_existing(groups: list[_Group]) -> list[tuple[int, str, str]]:
    """Find each group's customer in the database and what would change."""
    problems: list[tuple[int, str, str]] = []
    exts = [g.values["external_id"] for g in groups if g.values.get("external_id")]
    names = [g.values["name"].lower() for g in groups]
    existing = list(Customer.objects.annotate(lname=Lower("name")).filter(lname__in=names)) + list(
        Customer.objects.filter(external_id__in=exts)
    )
    by_ext = {c.external_id: c for c in existing if c.external_id}
    by_name = {c.name.lower(): c for c in existing}

    for group in groups:
        name = group.values["name"]
        ext = group.values.get("external_id", "")
        named = by_name.get(name.lower())
        match = by_ext.get(ext) if ext else None
        if match is not None:
            if named is not None and named.pk != match.pk:
                problems.append(
                    (
                        group.row,
                        "customer",
                        f"Another customer is already named {named.name!r}.",
                    )
                )
                continue
        elif named is not None:
            if ext and named.external_id and named.external_id != ext:
                problems.append(
                    (
                        group.row,
                        "external_id",
                        f"Customer {named.name!r} exists with the external id "
                        f"{named.external_id!r}.",
                    )
                )
                continue
            match = named
        group.existing = match
        if match is None:
            group.action = "create"
            continue
        for key, value in group.values.items():
            current = getattr(match, key)
            if key == "name" and current.lower() == value.lower():
                continue  # matched by it: the stored spelling stays
            if current != value:
                group.changes[key] = value
        if group.services is not None:
            current = set(match.services.values_list("pk", flat=True))
            if current != set(group.services):
                group.changes["services"] = list(group.services.values())
        group.action = "update" if group.changes else "unchanged"
    return problems


def _match_contacts(groups: list[_Group], result: ImportResult) -> None:
    known: dict[int, dict[str, CustomerContact]] = {}
    ids = [g.existing.pk for g in groups if g.existing is not None]
    for contact in CustomerContact.objects.filter(customer_id__in=ids):
        known.setdefault(contact.customer_id, {})[contact.email.lower()] = contact
    for group in groups:
        contacts = known.get(group.existing.pk, {}) if group.existing else {}
        for key, item in group.contacts.items():
            item.existing = contacts.get(key)
            if item.existing is None:
                item.action = "create"
                continue
            for name, value in item.values.items():
                if (
                    name == "incident_email"
                    and value
                    and not item.existing.incident_email
                    and item.existing.opted_out_at is not None
                ):
                    result.warnings.append(
                        f"Row {item.row}: {item.existing.email} opted out of incident email "
                        f"on {item.existing.opted_out_at:%Y-%m-%d}; the import does not "
                        "subscribe them again."
                    )
                    continue
                if getattr(item.existing, name) != value:
                    item.changes[name] = value
            item.action = "update" if item.changes else "unchanged"


def _write(groups: list[_Group], *, actor: Any, reason: str) -> None:
    for group in groups:
        services = list(group.services.values()) if group.services is not None else None
        if group.existing is None:
            customer = Customer(**group.values)
            audited_save(customer, actor=actor, reason=reason)
            if services:
                customer.services.set(services)
        else:
            customer = group.existing
            changes = dict(group.changes)
            new_services = changes.pop("services", None)
            if changes or new_services is not None:
                for name, value in changes.items():
                    setattr(customer, name, value)
                if new_services is not None:
                    customer.skip_history_when_saving = True
                    try:
                        customer.services.set(new_services)
                    finally:
                        del customer.skip_history_when_saving
                audited_save(customer, actor=actor, reason=reason)
        for item in group.contacts.values():
            if item.existing is None:
                contact = CustomerContact(customer=customer, **item.values)
            elif item.changes:
                contact = item.existing
                for name, value in item.changes.items():
                    setattr(contact, name, value)
            else:
                continue
            _opt_out_time(contact)
            audited_save(contact, actor=actor, reason=reason)


def customers_import(
    *, actor: Any, source: str, data: bytes | str, dry_run: bool = False, filename: str = ""
) -> ImportResult:
    """Create or update customers and their contacts from one CSV file (columns:
    :data:`IMPORT_COLUMNS`; one row per contact; UTF-8 with or without a BOM; comma,
    semicolon or tab separated, told from the header line).

    A customer is matched by ``external_id`` when the row has one, else by name
    (case-insensitive); its fields are taken from the rows that give them (a blank cell changes
    nothing; two rows of one customer that disagree are an error). ``services`` (slugs or
    names, separated by ``;`` or ``|``) replaces the customer's services with those of all its
    rows. A contact is matched by its address within its customer. A contact who opted out is
    not subscribed again (a warning says so).

    All or nothing: every row is checked first and any error refuses the file
    (:class:`ImportRejected`, listing the rows), nothing written. ``dry_run`` checks and
    reports, writes nothing. Needs the add and change permissions of customers and contacts.
    The history records name the actor and the file. Idempotent: importing the same file again
    changes nothing."""
    for perm in (
        "add_customer",
        "change_customer",
        "add_customercontact",
        "change_customercontact",
    ):
        require(actor, f"communications.{perm}", "import customers")
    header, records = read(decode(data))
    groups, problems = _plan_groups(header, records)
    if not problems:
        problems = _match_existing(groups)
    if problems:
        problems.sort(key=lambda p: (p[0], p[1]))
        raise ImportRejected(problems[:MAX_REPORTED_ERRORS], total=len(problems))

    result = ImportResult(dry_run=dry_run, rows=len(records))
    _match_contacts(groups, result)
    counters = {"create": "customers_created", "update": "customers_updated"}
    for group in groups:
        counter = counters.get(group.action, "customers_unchanged")
        setattr(result, counter, getattr(result, counter) + 1)
        for number, email in group.rows:
            item = group.contacts.get(email.lower()) if email else None
            result.preview.append(
                ImportRow(
                    row=number,
                    customer=group.values["name"],
                    customer_action=group.action,
                    contact=email,
                    contact_action=item.action if item else "",
                )
            )
        for item in group.contacts.values():
            counter = {"create": "contacts_created", "update": "contacts_updated"}.get(
                item.action, "contacts_unchanged"
            )
            setattr(result, counter, getattr(result, counter) + 1)
    result.preview.sort(key=lambda r: r.row)
    if dry_run:
        return result
    reason = f"CSV import{f' {filename}' if filename else ''} ({source})"
    try:
        with transaction.atomic():
            _write(groups, actor=actor, reason=reason)
    except IntegrityError:
        raise ImportRejected(
            [(0, "", "Customers were changed by someone else meanwhile; import the file again.")]
        ) from None
    return result
