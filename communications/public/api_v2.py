"""The Statuspage v2-compatible public API under ``/status/api/v2/``: the same paths, keys,
enums, nesting and timestamp format as an Atlassian Statuspage, so its consumers (exporters,
widgets, aggregators, chat bots) work pointed at Vigil. Built from :mod:`.snapshot`.

The JSON escapes ``<``, ``>`` and ``&`` (``\\u003c``...), so a public text that looks like markup
stays text even where a consumer pastes the JSON into a page's ``<script>``.
"""

from __future__ import annotations

import json
from typing import Any

from .site import Artifact, RenderContext, renderer
from .snapshot import INCIDENT_LIMIT, public_snapshot

PREFIX = "api/v2/"
CONTENT_TYPE = "application/json"
_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026"}


def _json(data: dict[str, Any]) -> Artifact:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":")).translate(_ESCAPES)
    return Artifact(body=text.encode(), content_type=CONTENT_TYPE)


@renderer
def render_api_v2(context: RenderContext) -> dict[str, Artifact]:
    snapshot = public_snapshot(context)
    page, status = snapshot["page"], snapshot["status"]
    components = snapshot["components"]
    incidents = snapshot["incidents"]
    unresolved = snapshot["unresolved"]
    maintenances = snapshot["scheduled_maintenances"]
    upcoming = [m for m in maintenances if m["status"] == "scheduled"]
    active = [m for m in maintenances if m["status"] in ("in_progress", "verifying")]
    # Statuspage lists upcoming maintenance soonest first.
    upcoming.sort(key=lambda m: (m["scheduled_for"], m["id"]))
    return {
        PREFIX + "summary.json": _json(
            {
                "page": page,
                "status": status,
                "components": components,
                "incidents": unresolved,
                "scheduled_maintenances": active + upcoming,
            }
        ),
        PREFIX + "status.json": _json({"page": page, "status": status}),
        PREFIX + "components.json": _json({"page": page, "components": components}),
        PREFIX + "incidents.json": _json({"page": page, "incidents": incidents[:INCIDENT_LIMIT]}),
        PREFIX + "incidents/unresolved.json": _json({"page": page, "incidents": unresolved}),
        PREFIX + "scheduled-maintenances.json": _json(
            {"page": page, "scheduled_maintenances": maintenances[:INCIDENT_LIMIT]}
        ),
        PREFIX + "scheduled-maintenances/upcoming.json": _json(
            {"page": page, "scheduled_maintenances": upcoming}
        ),
        PREFIX + "scheduled-maintenances/active.json": _json(
            {"page": page, "scheduled_maintenances": active}
        ),
    }
