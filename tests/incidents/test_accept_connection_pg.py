"""Accepting a delivery on PostgreSQL: the kept connection is not health-checked with a round
trip of its own before the INSERT; a connection that died meanwhile (a database restart) is
replaced and the delivery stored on the new one."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from incidents.models import WebhookDelivery
from tests.incidents.detection_fixtures import hook_path, make_integration, post, storm_alert
from tests.pg import terminate_backend

# Transactional: emptied after the test; serialized_rollback restores the seeded policy.
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


WRAPPER = type(connections["default"])
usable = WRAPPER.is_usable


def request_starts() -> None:
    """What Django does with the kept connection when a request starts (the test client
    leaves it out): forget the last health check."""
    connection.close_if_unusable_or_obsolete()


def test_a_delivery_is_stored_on_a_new_connection_when_the_kept_one_died(
    client, django_capture_on_commit_callbacks, service
):
    assert connection.health_check_enabled
    integration = make_integration("alertmanager", service=service)

    def fire(number: int) -> None:
        response, _ = post(
            client,
            hook_path(integration),
            storm_alert(number),
            capture=django_capture_on_commit_callbacks,
            Authorization=f"Bearer {integration.secret}",
        )
        assert response.status_code == 202, response.content

    fire(1)
    request_starts()
    checks = mock.patch.object(WRAPPER, "is_usable", autospec=True, side_effect=usable)
    with CaptureQueriesContext(connection) as queries, checks as health_check:
        fire(2)
    # The INSERT alone, and no health check (its SELECT 1) before it.
    assert [q["sql"].split()[0] for q in queries] == ["INSERT"], queries.captured_queries
    assert health_check.call_count == 0

    backend = terminate_backend(connection)
    request_starts()
    with checks as health_check:
        fire(3)
    # Looked at once the INSERT failed, then replaced.
    assert health_check.call_count == 1
    assert connection.connection.info.backend_pid != backend
    bodies = WebhookDelivery.objects.order_by("pk").values_list("body", flat=True)
    assert [f"Storm{n}" in body for n, body in enumerate(bodies, start=1)] == [True] * 3
