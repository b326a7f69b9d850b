"""gunicorn's settings for the Procfile's ``web`` process: ``make run`` (development, DEBUG on)
and ``make serve`` (the embedded installation in production mode) serve through the same WSGI
server, so the embedded default accepts an alert storm as fast as its database lets it.

Two worker processes with threads each (``gthread``): the two processes use both cores of a small
machine, and the threads keep a connection open while another waits on SQLite's single writer
(WAL and a busy timeout in config/settings.py make a writer wait for the lock instead of
failing). Each thread holds its own database connection.

    gunicorn config.wsgi --config python:config.gunicorn

``--bind`` comes from ``VIGIL_BIND`` and ``PORT`` (``make run BIND=... PORT=...``);
``WEB_CONCURRENCY`` (gunicorn's own variable) sets the worker processes and ``VIGIL_WEB_THREADS``
the threads of each. In development (``DJANGO_DEBUG`` on) a worker restarts when a Python file
changes, as runserver's autoreloader did, and each request is logged.
"""

from __future__ import annotations

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


def _on(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


_host = os.environ.get("VIGIL_BIND") or "127.0.0.1"
bind = f"[{_host}]" if ":" in _host else _host
bind += f":{os.environ.get('PORT') or 8000}"
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
threads = int(os.environ.get("VIGIL_WEB_THREADS") or 4)
worker_class = "gthread"
# A request running longer than a minute is stuck: its worker is restarted.
timeout = 60
# Ctrl-C (config/devrun.py) sends the master SIGTERM: requests in flight finish within this,
# before devrun's own deadline (KILL_WAIT) kills what is left.
graceful_timeout = 10
reload = _on("DJANGO_DEBUG")
# Django's cached template loader learns of an edited template only through runserver's
# autoreloader: here a worker restarts on it too.
reload_extra_files = (
    [str(path) for path in (_ROOT / "templates").rglob("*") if path.is_file()] if reload else []
)
accesslog = "-" if reload else None
# No control socket for gunicornc: its default path is one per user ($XDG_RUNTIME_DIR or
# ~/.gunicorn), which two checkouts served on one machine would take from each other.
control_socket_disable = True


def post_worker_init(worker) -> None:
    """A request asks for SQLite's write lock every half millisecond (config/sqlite), so it is
    not starved by the workers' back-to-back transactions; the webhooks the threads of a
    worker accept at one moment are written in one transaction (incidents/group_commit.py);
    and no log of its queries is kept with DEBUG on. No effect on PostgreSQL."""
    from config.sqlite import base
    from incidents import group_commit

    base.POLL_FOR_WRITE_LOCK = True
    base.KEEP_QUERY_LOG = False
    group_commit.ENABLED = True
