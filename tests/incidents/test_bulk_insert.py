"""``incidents.bulk.rows_insert``, the one INSERT of many new rows on the hot paths (a batch of
alerts opening incidents, an escalation sweep's pages): the rows it writes are those
``bulk_create`` writes, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.forms.models import model_to_dict

from escalation.models import Notification
from incidents.bulk import rows_insert
from incidents.models import Kind, Source, TimelineEntry
from tests.factories import IncidentFactory, UserFactory

pytestmark = pytest.mark.django_db

AT = datetime(2026, 12, 7, 5, 30, 15, 123456, tzinfo=UTC)


def entries(incident, actor, tag: str, count: int = 3) -> list[TimelineEntry]:
    return [
        TimelineEntry(
            incident=incident,
            occurred_at=AT,
            kind=Kind.ALERT,
            source=Source.SYSTEM if n % 2 else Source.API,
            actor=actor if n % 2 else None,
            message=f'{tag} {n}: it\'s "down"\n; DROP TABLE x; -- ünïcode ✓',
            data={"n": n, "nested": {"list": [1, None, "two"]}, "empty": {}, "tag": tag},
        )
        for n in range(count)
    ]


def stored(pks: list[int]) -> list[dict]:
    rows = TimelineEntry.objects.filter(pk__in=pks).order_by("pk")
    return [
        {k: v for k, v in model_to_dict(row).items() if k != "id"}
        | {"incident": row.incident_id, "recorded_at": row.recorded_at is not None}
        for row in rows
    ]


def test_the_rows_are_those_bulk_create_writes():
    incident = IncidentFactory()
    actor = UserFactory()
    ours = entries(incident, actor, "same")
    theirs = entries(incident, actor, "same")
    assert rows_insert(ours) == ours
    TimelineEntry.objects.bulk_create(theirs)
    # Primary keys set, in order, and the objects saved as bulk_create leaves them.
    assert all(a.pk and b.pk for a, b in zip(ours, theirs, strict=True))
    assert [e.pk for e in ours] == sorted(e.pk for e in ours)
    assert not any(e._state.adding for e in ours)
    assert stored([e.pk for e in ours]) == stored([e.pk for e in theirs])
    # auto_now_add set on the objects too, read back unchanged.
    for entry in ours:
        assert TimelineEntry.objects.get(pk=entry.pk).recorded_at == entry.recorded_at
    # Each object holds its own row (the order RETURNING gives is the order of the rows).
    for entry in ours:
        assert TimelineEntry.objects.get(pk=entry.pk).message == entry.message


def test_one_statement_for_many_rows_and_none_for_no_rows(django_assert_num_queries):
    incident = IncidentFactory()
    rows = entries(incident, None, "many", count=200)
    with django_assert_num_queries(1):
        rows_insert(rows)
    with django_assert_num_queries(0):
        assert rows_insert([]) == []
    assert TimelineEntry.objects.filter(message__startswith="many ").count() == 200


@pytest.fixture
def sqlite_limit_999():
    """On SQLite, the connection's limit on a statement's parameters lowered to 999 (builds
    before 3.32, and Django's own assumption), restored afterwards."""
    if connection.vendor != "sqlite":
        yield
        return
    connection.ensure_connection()
    raw = connection.connection
    before = raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    try:
        yield
    finally:
        raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, before)


def test_more_rows_than_one_statement_takes_are_split(sqlite_limit_999, django_assert_num_queries):
    """300 rows of 8 columns: three statements of at most 124 rows under SQLite's limit of
    999 parameters, one on PostgreSQL (one array per column)."""
    incident = IncidentFactory()
    rows = entries(incident, None, "split", count=300)
    with django_assert_num_queries(3 if connection.vendor == "sqlite" else 1):
        inserted = rows_insert(rows)
    assert len(inserted) == 300 and len({e.pk for e in inserted}) == 300
    found = TimelineEntry.objects.filter(incident=incident, message__startswith="split ")
    by_pk = dict(found.values_list("pk", "message"))
    assert all(by_pk[e.pk] == e.message for e in inserted)


def page(key: str, subject: str = "Sev 1: checkout down") -> Notification:
    return Notification(
        channel="webhook",
        recipient="ops",
        subject=subject,
        body="Checkout is down.",
        template="page",
        reason="test",
        idempotency_key=key,
        context={"kind": "page"},
        next_attempt_at=AT,
    )


def test_conflicting_keys_are_skipped_and_only_new_rows_come_back():
    first = rows_insert([page("k1"), page("k2")], ignore_conflicts=True, key="idempotency_key")
    assert [n.idempotency_key for n in first] == ["k1", "k2"]
    again = [page("k2", subject="changed"), page("k3"), page("k1"), page("k4")]
    new = rows_insert(again, ignore_conflicts=True, key="idempotency_key")
    assert [n.idempotency_key for n in new] == ["k3", "k4"]
    assert again[0].pk is None and again[2].pk is None
    assert dict(Notification.objects.values_list("idempotency_key", "pk")) == {
        "k1": first[0].pk,
        "k2": first[1].pk,
        "k3": again[1].pk,
        "k4": again[3].pk,
    }
    # The row that was there is untouched.
    assert Notification.objects.get(idempotency_key="k2").subject == "Sev 1: checkout down"
    # Every key already there: nothing written, nothing returned.
    assert rows_insert([page("k1")], ignore_conflicts=True, key="idempotency_key") == []


def test_a_row_that_breaks_a_constraint_fails_the_statement_as_bulk_create_does():
    from django.db import IntegrityError, transaction

    rows_insert([page("dup")])
    with pytest.raises(IntegrityError), transaction.atomic():
        rows_insert([page("fresh"), page("dup")])
    assert not Notification.objects.filter(idempotency_key="fresh").exists()
