"""The Django handlers of config.wsgi: a request to the inbound webhooks (``HOOKS_PATHS``) goes
through the short middleware chain ``HOOKS_MIDDLEWARE``, any other through ``MIDDLEWARE``."""

from django.core.handlers.wsgi import WSGIHandler


def is_hook_path(path: str) -> bool:
    """Whether ``path`` (the request's path within the site) is one of ``HOOKS_PATHS``: a
    prefix when it ends with a slash, else the whole path."""
    from django.conf import settings

    return any(
        path.startswith(hook) if hook.endswith("/") else path == hook
        for hook in settings.HOOKS_PATHS
    )


class HooksMiddleware:
    """For a Django handler class: its middleware chain is ``settings.HOOKS_MIDDLEWARE``."""

    def load_middleware(self, is_async: bool = False) -> None:
        from django.conf import settings

        # Django builds the chain from settings.MIDDLEWARE; it is swapped for the time of the
        # build only (once, as the handler starts).
        site = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.HOOKS_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = site


class HooksHandler(HooksMiddleware, WSGIHandler):
    pass
