"""Heartbeat pings (cron jobs, backups): the kind takes no alert deliveries, so it has no
parser; its only hook is the ping (``/hooks/ping/<key>/``, :mod:`..views_ping`). Its snippet
shows a job pinging once it has succeeded."""

from __future__ import annotations

from typing import Any

from ...models import IntegrationKind
from . import register


def snippet(integration: Any, urls: dict[str, str]) -> str:
    url = urls["ping_url"]
    minutes = integration.heartbeat_minutes
    every = f"{minutes} minute(s)" if minutes else "the interval set on the integration"
    ping = f"curl -fsS --retry 3 -o /dev/null '{url}'"
    return (
        f"# Vigil opens an incident when no ping arrives for {every}.\n"
        "# Ping only once the job has succeeded; curl -f makes an HTTP error fail too.\n"
        "\n"
        "# crontab\n"
        f"30 2 * * * /usr/local/bin/nightly-backup.sh && {ping}\n"
        "\n"
        "# systemd: the job's service unit (oneshot: ExecStartPost runs after success)\n"
        "[Service]\n"
        "Type=oneshot\n"
        "ExecStart=/usr/local/bin/nightly-backup.sh\n"
        f"ExecStartPost=/usr/bin/{ping}\n"
        "\n"
        "# a backup script\n"
        "#!/bin/sh\n"
        "set -eu\n"
        'pg_dump --format=custom --file="/backups/app-$(date +%F).dump" app\n'
        f"{ping}\n"
    )


register(IntegrationKind.HEARTBEAT, snippet=snippet)
