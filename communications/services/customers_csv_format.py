"""The customers CSV format: its columns and limits, reading a file's text into its header and
rows (refusing a file that is not one, with every problem listed), and writing customers and
their contacts back out in the same format."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from incidents.errors import InvalidInput

from ..models import Customer

__all__ = [
    "IMPORT_COLUMNS",
    "IMPORT_MAX_BYTES",
    "IMPORT_MAX_ROWS",
    "ImportRejected",
    "customers_export_rows",
]


IMPORT_MAX_BYTES = 1024 * 1024
IMPORT_MAX_ROWS = 5000
IMPORT_COLUMNS = (
    "customer",
    "external_id",
    "plan",
    "sla",
    "sla_terms",
    "account_owner",
    "services",
    "notes",
    "contact_name",
    "contact_email",
    "contact_phone",
    "contact_title",
    "incident_email",
)
# Columns of the file and the customer's or contact's field each fills.
CUSTOMER_COLUMNS = {
    "customer": "name",
    "external_id": "external_id",
    "plan": "plan",
    "sla": "has_sla",
    "sla_terms": "sla_terms",
    "account_owner": "account_owner",
    "notes": "notes",
}
CONTACT_COLUMNS = {
    "contact_name": "name",
    "contact_email": "email",
    "contact_phone": "phone",
    "contact_title": "title",
    "incident_email": "incident_email",
}
# A spreadsheet runs a cell that starts with one of these as a formula; the export quotes them
# with a leading apostrophe and the import takes it off again.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# --- reading a file -------------------------------------------------------------------------------


class ImportRejected(InvalidInput):
    """The file was refused, nothing written (400). ``problems`` lists ``(row, column,
    message)``; row numbers count the header as row 1, as a spreadsheet shows them (0: the
    file as a whole)."""

    def __init__(self, problems: list[tuple[int, str, str]], total: int | None = None) -> None:
        self.problems = problems
        self.total = total if total is not None else len(problems)
        errors: dict[str, str] = {}
        for row, column, message in problems:
            key = f"row {row}" if row else "file"
            if column:
                key += f".{column}"
            errors[key] = f"{errors[key]} {message}" if key in errors else message
        if self.total > len(problems):
            errors["file"] = (
                errors.get("file", "") + f" {self.total - len(problems)} more errors not shown."
            ).strip()
        super().__init__(errors)
        self.message = (
            f"The file was not imported: {self.total} error(s); nothing was changed. "
            + self.message
        )


def decode(data: bytes | str) -> str:
    if isinstance(data, str):
        text = data
    else:
        if len(data) > IMPORT_MAX_BYTES:
            raise ImportRejected([(0, "", f"The file is larger than {IMPORT_MAX_BYTES} bytes.")])
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ImportRejected([(0, "", "The file is not UTF-8 text.")]) from None
    if len(text.encode("utf-8")) > IMPORT_MAX_BYTES:
        raise ImportRejected([(0, "", f"The file is larger than {IMPORT_MAX_BYTES} bytes.")])
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        raise ImportRejected([(0, "", "The file is not text (it holds NUL bytes).")])
    if not text.strip():
        raise ImportRejected([(0, "", "The file is empty.")])
    return text


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    header = text.splitlines()[0] if text.splitlines() else ""
    try:
        return csv.Sniffer().sniff(header, delimiters=",;\t")
    except csv.Error:
        # One column (no delimiter in the header): any dialect reads it.
        return csv.excel


def cell(value: str | None) -> str:
    value = (value or "").strip()
    if value.startswith("'") and value[1:2] in FORMULA_START:
        value = value[1:]
    return value


def read(text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    dialect = _dialect(text)
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = [h.strip().lower().replace(" ", "_") for h in next(reader)]
        records: list[tuple[int, list[str]]] = []
        for number, record in enumerate(reader, start=2):
            if not any(cell.strip() for cell in record):
                continue
            if len(records) >= IMPORT_MAX_ROWS:
                raise ImportRejected(
                    [(0, "", f"The file has more than {IMPORT_MAX_ROWS} rows; split it.")]
                )
            records.append((number, record))
    except csv.Error as exc:
        raise ImportRejected([(0, "", f"The file is not valid CSV: {exc}.")]) from None
    unknown = [h for h in header if h not in IMPORT_COLUMNS]
    problems = [(1, h or "(blank)", "Unknown column.") for h in unknown]
    duplicates = sorted({h for h in header if header.count(h) > 1})
    problems += [(1, h, "Column given twice.") for h in duplicates]
    if "customer" not in header:
        problems.append((1, "customer", "The customer column is required."))
    if problems:
        raise ImportRejected([*problems, (0, "", f"Known columns: {', '.join(IMPORT_COLUMNS)}.")])
    if not records:
        raise ImportRejected([(0, "", "The file has a header and no rows.")])
    return header, records


# --- CSV export ----------------------------------------------------------------------------------


def _safe(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def customers_export_rows(customers: Iterable[Customer]) -> Iterable[list[str]]:
    """The rows of a CSV file in the import's format (header first, one row per contact, a
    customer without contacts on a row of its own): exporting and importing again changes
    nothing. Cells a spreadsheet would run as a formula are quoted with an apostrophe."""
    yield list(IMPORT_COLUMNS)
    for customer in customers:
        base = [
            customer.name,
            customer.external_id,
            customer.plan,
            "yes" if customer.has_sla else "no",
            customer.sla_terms,
            customer.account_owner.get_username() if customer.account_owner else "",
            ";".join(s.slug for s in customer.services.all()),
            customer.notes,
        ]
        contacts = list(customer.contacts.all())
        if not contacts:
            yield [_safe(v) for v in base] + ["", "", "", "", ""]
        for contact in contacts:
            yield [_safe(v) for v in base] + [
                _safe(v)
                for v in (
                    contact.name,
                    contact.email,
                    contact.phone,
                    contact.title,
                    "yes" if contact.incident_email else "no",
                )
            ]
