"""The Celery application: configured from Django settings (``CELERY_*``), tasks found per app."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("vigil")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _database_connections(sender=None, **kwargs) -> None:
    """Around each task, what Django does around each request: close a connection that is
    broken, had errors, or outlived CONN_MAX_AGE, and keep a healthy one (CELERY_DB_REUSE_MAX
    keeps Celery's fixup from closing every connection every time)."""
    if sender is not None and getattr(sender.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
