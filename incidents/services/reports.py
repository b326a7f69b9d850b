"""Reports from people and checks (§4.1): customer reports, support escalations, third-party
notifications and routine checks, from the admin form, the API and inbound email.

A report either opens an incident (through ``incident_create``, detection source = the kind of
report) or is appended to an existing one (a timeline note through ``incident_note_add``); in
both cases the reporter and what they said go on the timeline, and the report itself is kept
as an :class:`IncomingReport`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from ..errors import InvalidInput
from ..models import (
    Incident,
    IncomingReport,
    Kind,
    ReportKind,
    Service,
    SeverityLevel,
    Source,
)
from .common import require_perm
from .creation import incident_create
from .incidents import NOTE_MAX_LENGTH, incident_note_add

# A person's report is triaged by the incident manager, who raises the severity when the
# impact turns out larger: until then it is logged as Sev 3 (Medium) unless the reporter says.
DEFAULT_SEVERITY = 3
DESCRIPTION_MAX = 10_000
TITLE_MAX = 200
NAME_MAX = 200
MESSAGE_ID_MAX = 255
CHANNELS = (Source.ADMIN, Source.API, Source.EMAIL)


@dataclass(frozen=True)
class ReportOutcome:
    """What a report did: the incident it opened or joined; ``duplicate`` when an inbound
    email with the same Message-ID was already taken (nothing was written this time)."""

    report: IncomingReport
    incident: Incident
    opened: bool
    duplicate: bool = False


def report_submit(
    *,
    actor: Any,
    source: str,
    kind: str,
    description: str,
    reporter_name: str = "",
    reporter_email: str = "",
    title: str = "",
    services: Iterable[Service | str] = (),
    severity: int | None = None,
    incident: Incident | None = None,
    message_id: str = "",
    summary_note: str = "",
) -> ReportOutcome:
    """Take a report: open an incident from it, or append it to ``incident``.

    ``actor`` needs ``incidents.add_incident`` (``None`` is Vigil itself, e.g. inbound email);
    opening also needs what ``incident_create`` needs, appending what ``incident_note_add``
    needs. A new incident gets detection source ``kind``, the reporter's title (or the first
    line of the description), the description as summary, the named services and the given
    severity (Sev 3 when none); the response team is paged as for any new incident. The
    reporter and the description go on the timeline either way. ``summary_note`` is added to
    the new incident's summary (e.g. which closed incident an email referred to).

    Idempotent only with a ``message_id``: a second report with the same one writes nothing
    and returns the first with ``duplicate=True`` (also when both arrive at the same moment:
    the UNIQUE constraint on the Message-ID lets one commit and rolls the other back).
    """
    require_perm(actor, "incidents.add_incident", "report")
    values = _clean(
        source=source,
        kind=kind,
        description=description,
        reporter_name=reporter_name,
        reporter_email=reporter_email,
        title=title,
        severity=severity,
        message_id=message_id,
    )
    if message_id:
        existing = _already_taken(values["message_id"])
        if existing is not None:
            return existing
    try:
        return _submit(
            actor=actor,
            source=source,
            values=values,
            services=list(services),
            incident=incident,
            summary_note=summary_note,
        )
    except IntegrityError:
        existing = _already_taken(values["message_id"]) if values["message_id"] else None
        if existing is None:
            raise
        return existing


def _already_taken(message_id: str) -> ReportOutcome | None:
    report = IncomingReport.objects.select_related("incident").filter(message_id=message_id).first()
    if report is None:
        return None
    return ReportOutcome(report=report, incident=report.incident, opened=False, duplicate=True)


def _clean(**values: Any) -> dict[str, Any]:
    errors: dict[str, str] = {}
    if values["source"] not in CHANNELS:
        errors["source"] = f"Reports come through {', '.join(CHANNELS)}."
    if values["kind"] not in ReportKind.values:
        errors["kind"] = f"{values['kind']!r} is not one of: {', '.join(ReportKind.values)}."
    description = _text(values["description"])
    if not description:
        errors["description"] = "Describe the problem."
    elif len(description) > DESCRIPTION_MAX:
        errors["description"] = f"Descriptions are limited to {DESCRIPTION_MAX} characters."
    name = " ".join(_text(values["reporter_name"]).split())
    email = _text(values["reporter_email"])
    if len(name) > NAME_MAX:
        errors["reporter_name"] = f"Names are limited to {NAME_MAX} characters."
    if email:
        try:
            validate_email(email)
        except ValidationError:
            errors["reporter_email"] = "Give a valid email address, or leave it empty."
    if not name and not email:
        errors["reporter_name"] = "Name the reporter (a name or an email address)."
    title = " ".join(_text(values["title"]).split())
    if len(title) > TITLE_MAX:
        errors["title"] = f"Titles are limited to {TITLE_MAX} characters."
    severity = values["severity"]
    if severity is not None:
        if isinstance(severity, SeverityLevel):
            severity = severity.level
        if isinstance(severity, bool) or not isinstance(severity, int):
            errors["severity"] = "Give a severity level (1–4), or leave it empty."
        elif not SeverityLevel.objects.filter(level=severity).exists():
            errors["severity"] = f"Unknown severity {severity}."
    message_id = _text(values["message_id"])
    if len(message_id) > MESSAGE_ID_MAX:
        errors["message_id"] = f"Message-IDs are limited to {MESSAGE_ID_MAX} characters."
    if errors:
        raise InvalidInput(errors)
    return {
        "kind": values["kind"],
        "description": description,
        "reporter_name": name,
        "reporter_email": email,
        "title": title,
        "severity": severity,
        "message_id": message_id,
    }


def _text(value: Any) -> str:
    text = "" if value is None else str(value)
    # NUL cannot be stored by PostgreSQL; other control characters (bar line breaks and tabs)
    # only hide text from whoever reads the timeline.
    return "".join(ch for ch in text if ch in "\n\t" or ch.isprintable()).strip()


@transaction.atomic
def _submit(
    *,
    actor: Any,
    source: str,
    values: dict[str, Any],
    services: list[Service | str],
    incident: Incident | None,
    summary_note: str,
) -> ReportOutcome:
    kind = ReportKind(values["kind"])
    service_slugs = [s.slug if isinstance(s, Service) else str(s) for s in services]
    unknown = sorted(
        set(service_slugs)
        - set(Service.objects.filter(slug__in=service_slugs).values_list("slug", flat=True))
    )
    if unknown:
        raise InvalidInput({"services": f"Unknown service(s): {', '.join(unknown)}."})
    opened = incident is None
    if opened:
        summary = values["description"]
        if summary_note:
            summary = f"{summary_note}\n\n{summary}"
        incident = incident_create(
            actor=actor,
            source=source,
            title=values["title"] or _first_line(values["description"]),
            severity=values["severity"] if values["severity"] is not None else DEFAULT_SEVERITY,
            summary=summary,
            detection_source=kind.value,
            services=services,
        )
    report = IncomingReport.objects.create(
        incident=incident,
        opened_incident=opened,
        kind=kind.value,
        channel=source,
        reporter_name=values["reporter_name"],
        reporter_email=values["reporter_email"],
        title=values["title"],
        description=values["description"],
        services=service_slugs,
        severity=values["severity"],
        message_id=values["message_id"],
        submitted_by=actor,
    )
    incident_note_add(
        incident=incident,
        actor=actor,
        source=source,
        body=_note(report, opened=opened, channel=source),
        kind=Kind.NOTE,
    )
    return ReportOutcome(report=report, incident=incident, opened=opened)


def _first_line(text: str) -> str:
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= TITLE_MAX else line[: TITLE_MAX - 1].rstrip() + "…"


def _note(report: IncomingReport, *, opened: bool, channel: str) -> str:
    via = {Source.ADMIN: "the admin", Source.API: "the API", Source.EMAIL: "email"}[channel]
    head = f"{report.get_kind_display()} from {report.reporter_label}, received by {via}"
    head += " (opened this incident)." if opened else " (appended to this incident)."
    lines = [head]
    if report.title and not opened:
        lines.append(f"Subject: {report.title}")
    if report.services and not opened:
        lines.append("Services named: " + ", ".join(report.services))
    if report.severity is not None and not opened:
        lines.append(f"Severity given by the reporter: Sev {report.severity}")
    lines += ["", report.description]
    body = "\n".join(lines)
    if len(body) > NOTE_MAX_LENGTH:
        body = body[: NOTE_MAX_LENGTH - 1] + "…"
    return body


__all__ = ["DEFAULT_SEVERITY", "DESCRIPTION_MAX", "ReportOutcome", "report_submit"]
