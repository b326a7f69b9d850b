"""PostgreSQL helpers for tests."""

from __future__ import annotations

from typing import Any

import psycopg


def terminate_backend(connection: Any) -> int:
    """End the server process behind Django's ``connection`` from another connection, as a
    database restart or a failover would; returns that process's id. The connection does not
    know until its next statement fails."""
    connection.ensure_connection()
    backend = connection.connection.info.backend_pid
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [backend])
    return backend
