"""Group commit of accepted deliveries on the embedded setup (incidents/group_commit.py): the
requests of one web process that accept at the same moment write their rows in one
transaction, and each gets its own delivery back; one bad row fails only its own request."""

from __future__ import annotations

import contextlib
import json
import threading
import time

import pytest
from django.db import IntegrityError, connection, transaction

from config.sqlite import base as sqlite_backend
from incidents import group_commit
from incidents.detection import intake
from incidents.group_commit import GroupCommit
from incidents.models import WebhookDelivery
from tests.incidents.detection_fixtures import make_integration
from tests.threads import in_threads

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        connection.vendor != "sqlite", reason="group commit is the embedded SQLite setup's"
    ),
]


@pytest.fixture
def web_process(monkeypatch):
    """As in a web server's worker process on SQLite, with a group commit of the test's own
    whose leader, once it holds the write lock, waits for ``gate`` before it writes."""
    monkeypatch.setattr(sqlite_backend, "POLL_FOR_WRITE_LOCK", True)
    monkeypatch.setattr(group_commit, "ENABLED", True)
    monkeypatch.setattr(intake, "deliveries_kick", lambda: False)
    gate = threading.Event()

    class Gated(GroupCommit):
        @contextlib.contextmanager
        def _transaction(self):
            with super()._transaction():
                gate.wait(30)
                yield

    accepts = Gated()
    monkeypatch.setattr(intake, "ACCEPTS", accepts)
    return accepts, gate


def accept(integration_id: int, n: int) -> int:
    return intake.delivery_accept(
        integration_id=integration_id,
        body=json.dumps({"title": f"alert {n}"}),
        headers={"Content-Type": "application/json"},
        remote_addr="192.0.2.1",
        alert_count=1,
        group_hash=f"g{n}",
    )


def accept_together(web_process, integration_for) -> dict[int, object]:
    """``len(integration_for)`` requests accept at once, request ``n`` for the integration
    ``integration_for[n]``: one leads (it holds the write lock and waits at the gate, its own
    statement queued with the others'), the gate opens once all are queued. Returns each
    request's delivery id, or the error it raised."""
    accepts, gate = web_process
    outcome: dict[int, object] = {}

    def request(n: int):
        def run():
            try:
                outcome[n] = accept(integration_for[n], n)
            except IntegrityError as exc:
                outcome[n] = exc

        return run

    count = len(integration_for)
    racers = threading.Thread(
        target=lambda: in_threads(*[request(n) for n in range(count)], timeout=60), daemon=True
    )
    racers.start()
    deadline = time.monotonic() + 20
    while len(accepts._queue) < count:
        assert time.monotonic() < deadline, "the requests did not queue behind one leader"
        time.sleep(0.01)
    gate.set()
    racers.join(60)
    assert len(outcome) == count
    return outcome


def test_requests_accepting_at_once_share_one_transaction_and_get_their_own_rows(web_process):
    integration = make_integration("generic")
    results = accept_together(web_process, [integration.pk] * 8)
    assert len(set(results.values())) == 8
    rows = {d.pk: d for d in WebhookDelivery.objects.all()}
    assert set(rows) == set(results.values())
    for n, pk in results.items():
        assert json.loads(rows[pk].body) == {"title": f"alert {n}"}
        assert rows[pk].group_hash == f"g{n}" and rows[pk].status == "pending"
    # One transaction wrote all eight.
    accepts, _gate = web_process
    assert (accepts.groups, accepts.statements) == (1, 8)


def test_a_bad_row_fails_only_its_own_request(web_process):
    integration = make_integration("generic")
    # Request 3 names an integration that does not exist: its foreign key fails at commit,
    # and with it the whole group's transaction.
    outcome = accept_together(web_process, [integration.pk] * 3 + [999_999] + [integration.pk] * 2)
    assert isinstance(outcome.pop(3), IntegrityError)
    assert all(isinstance(pk, int) for pk in outcome.values())
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == set(outcome.values())


def test_inside_a_transaction_a_request_writes_its_own_row(web_process):
    accepts, gate = web_process
    gate.set()
    integration = make_integration("generic")
    with transaction.atomic():
        pk = accept(integration.pk, 1)
    assert WebhookDelivery.objects.filter(pk=pk).exists()
    assert accepts.statements == 0
