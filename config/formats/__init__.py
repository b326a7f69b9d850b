"""Vigil's display formats (``FORMAT_MODULE_PATH``): the admin's own rendering of dates and
times (read-only fields, list columns, ``{{ value }}`` in templates) in the one format of
``incidents.timeformat``: ``3 Dec 2026, 14:05 CET``."""
