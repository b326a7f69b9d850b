"""SVG status badges, shields-style (label | status, coloured by status), drawn by anybadge
(which XML-escapes both texts and sizes them): ``badge.svg`` for the whole page and
``components/<code>/badge.svg`` for each component."""

from __future__ import annotations

import anybadge

from .feeds import xml_text
from .site import Artifact, RenderContext, renderer
from .snapshot import public_snapshot

CONTENT_TYPE = "image/svg+xml"
INDICATOR_COLOURS = {
    "none": "#4c1",
    "minor": "#dfb317",
    "major": "#fe7d37",
    "critical": "#e05d44",
    "maintenance": "#007ec6",
}
STATUS_COLOURS = {
    "operational": "#4c1",
    "degraded_performance": "#dfb317",
    "partial_outage": "#fe7d37",
    "major_outage": "#e05d44",
    "under_maintenance": "#007ec6",
}


def badge_svg(*, label: str, value: str, colour: str, key: str) -> bytes:
    badge = anybadge.Badge(label=xml_text(label), value=xml_text(value), default_color=colour)
    # anybadge numbers masks per process; a name of the badge's own keeps renders identical
    # and ids distinct where several badges are inlined in one page.
    badge.mask_str = f"vigil-badge-{key}"
    return badge.badge_svg_text.encode()


@renderer
def render_badges(context: RenderContext) -> dict[str, Artifact]:
    snapshot = public_snapshot(context)
    status = snapshot["status"]
    files = {
        "badge.svg": Artifact(
            badge_svg(
                label="status",
                value=status["description"].lower(),
                colour=INDICATOR_COLOURS[status["indicator"]],
                key="page",
            ),
            CONTENT_TYPE,
        )
    }
    for component in snapshot["components"]:
        if component["group"]:
            continue
        files[f"components/{component['id']}/badge.svg"] = Artifact(
            badge_svg(
                label=component["name"],
                value=component["status"].replace("_", " "),
                colour=STATUS_COLOURS[component["status"]],
                key=f"component-{component['id']}",
            ),
            CONTENT_TYPE,
        )
    return files
