"""Prepared statements on PostgreSQL (``incidents.prepared``): the work rows' bookkeeping
writes outside a transaction (as a worker runs them) commit without waiting for the WAL flush
(each sets it in the statement itself), are prepared once they have run
``VIGIL_DB_PREPARE_THRESHOLD`` times on the connection, and still run unprepared when prepared
statements are off; the incident
list's page and the API's permission check are prepared too. Transactional tests: inside a
test's transaction every bookkeeping write is a plain statement."""

from __future__ import annotations

import pytest
from django.db import OperationalError, ProgrammingError, connection, transaction

from incidents.models import IncidentEvent
from incidents.queue import WorkQueue
from incidents.queue_statements import UNSYNCED, bookkeeping
from tests.events import pending_event
from tests.pg import terminate_backend

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

QUEUE = WorkQueue(model=IncidentEvent, lease=60)


def prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [statement for (statement,) in cursor.fetchall()]


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def test_claims_and_records_are_prepared_after_the_threshold():
    assert connection.connection.prepare_threshold == 5  # the default of the settings
    events = [pending_event() for _ in range(7)]
    for event in events:
        claimed = QUEUE.claim(event.pk)
        assert (claimed.pk, claimed.status, claimed.attempts) == (event.pk, "running", 1)
        assert QUEUE.claim(event.pk) is None  # held by a live lease
        assert QUEUE.complete(claimed)
        assert not QUEUE.complete(claimed)  # already done: never rewritten

    assert set(
        IncidentEvent.objects.filter(pk__in=[e.pk for e in events]).values_list("status", flat=True)
    ) == {"done"}
    table = IncidentEvent._meta.db_table
    statements = [s for s in prepared() if s.startswith(f'UPDATE "{table}"')]
    # The claim and the record of a success, each prepared once for the connection.
    claims = [s for s in statements if '"attempts" = "attempts" + 1' in s]
    records = [
        s for s in statements if s.startswith(f'UPDATE "{table}" SET "status" = $1, "last_error"')
    ]
    assert (len(claims), len(records)) == (1, 1), statements
    assert synchronous_commit() == "on"  # the setting stayed in each write's transaction


def setting_in_statement(pk: int) -> str:
    """A marked statement that reads the setting while it writes."""
    table = connection.ops.quote_name(IncidentEvent._meta.db_table)
    rows, count = bookkeeping(
        f"UPDATE {table} SET attempts = attempts WHERE {UNSYNCED}id = %s "
        "RETURNING current_setting('synchronous_commit')",
        [pk],
        returning=True,
    )
    assert count == 1
    return rows[0][0]


def test_a_bookkeeping_write_commits_without_waiting_for_the_flush():
    assert setting_in_statement(pending_event().pk) == "off"
    assert synchronous_commit() == "on"


def test_a_statement_without_the_mark_is_refused():
    with pytest.raises(ValueError, match="needs"):
        bookkeeping('UPDATE "incidents_incidentevent" SET attempts = attempts WHERE id = 0', [])


def test_a_marked_statement_sets_it_for_its_own_transaction_only(django_assert_num_queries):
    event = pending_event()
    for _ in range(7):  # prepared from the fifth run on
        assert setting_in_statement(event.pk) == "off"
    assert synchronous_commit() == "on"
    # Counted (and logged) by Django's own cursor: one statement, still with the setting.
    with django_assert_num_queries(1):
        assert setting_in_statement(event.pk) == "off"
    # In the caller's transaction the mark stays a comment: the caller's writes keep theirs.
    with transaction.atomic():
        assert setting_in_statement(event.pk) == "on"


def test_without_prepared_statements_they_still_run_unprepared(monkeypatch):
    connection.ensure_connection()
    monkeypatch.setattr(connection.connection, "prepare_threshold", None)
    event = pending_event()
    for _ in range(6):
        assert setting_in_statement(event.pk) == "off"
    claimed = QUEUE.claim(event.pk)
    assert claimed.status == "running"
    assert prepared() == []
    assert synchronous_commit() == "on"


def test_a_failing_write_raises_djangos_error_and_the_connection_goes_on():
    event = pending_event()
    with pytest.raises(ProgrammingError):  # on the driver's cursor
        bookkeeping(f'UPDATE "no_such_table" SET x = %s WHERE {UNSYNCED}y = 1', [1])
    assert QUEUE.claim(event.pk).status == "running"
    assert synchronous_commit() == "on"


def test_a_claim_on_a_dropped_connection_raises_djangos_error_and_the_next_one_reconnects():
    event = pending_event()
    terminate_backend(connection)
    # Django's error (what the delivery tasks retry on), the connection marked as failed ...
    with pytest.raises(OperationalError):
        QUEUE.claim(event.pk)
    assert connection.errors_occurred
    # ... so that the check after a task (or request) replaces it.
    connection.close_if_unusable_or_obsolete()
    assert QUEUE.claim(event.pk).status == "running"


def test_the_incident_lists_page_and_permission_check_are_prepared(
    api_as, incident_manager, make_incident
):
    for number in range(3):
        make_incident(title=f"Prepared {number}")
    client = api_as(incident_manager)
    pages = [client.get("/api/v1/incidents/?status=open") for _ in range(7)]
    assert {page.status_code for page in pages} == {200}
    first = pages[0].json()
    assert [row["title"] for row in first["results"]] == [f"Prepared {n}" for n in (2, 1, 0)]
    assert pages[-1].json() == first  # the prepared statement answers as the first did
    statements = prepared()
    assert any(s.startswith("SELECT") and '"api_head"' in s for s in statements), statements
    assert any("auth_permission" in s for s in statements), statements
