"""Rows made once for all the tests of a module or class instead of once per test.

A module- or class-scoped fixture makes them inside a transaction of its own, which it rolls
back when the scope ends::

    @pytest.fixture(scope="module")
    def spread_rows(django_db_setup, django_db_blocker):
        yield from scoped_rows(django_db_blocker, make_the_rows)

Each test's own ``db`` transaction is then a savepoint inside it, so whatever a test writes is
undone after it and the next test sees the rows exactly as they were made (Django's
``TestCase.setUpTestData``; pytest-django leaves ``TestCase``'s class transaction out so that
tests can be wrapped this way). Use it only from tests that take ``db``: a ``transactional_db``
test empties the tables, which this transaction would not survive. Hand the tests values (ids,
numbers, tokens), not model instances a test could change in memory for the next one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, transaction

T = TypeVar("T")


def scoped_rows(
    django_db_blocker: Any, make: Callable[[], T], *, using: str = DEFAULT_DB_ALIAS
) -> Iterator[T]:
    """Open the scope's transaction, yield what ``make()`` returns, roll everything back."""
    with django_db_blocker.unblock():
        atomic = transaction.atomic(using=using)
        atomic.__enter__()
        try:
            made = make()
        except BaseException:
            atomic.__exit__(*sys.exc_info())
            raise
    try:
        yield made
    finally:
        with django_db_blocker.unblock():
            transaction.set_rollback(True, using=using)
            atomic.__exit__(None, None, None)
