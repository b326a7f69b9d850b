"""The WSGI application that gunicorn serves (the Procfile's ``web`` process).

Two Django handlers share one URLconf: a request to the inbound webhooks (``HOOKS_PATHS``)
goes through the short middleware chain ``HOOKS_MIDDLEWARE``, any other through
``MIDDLEWARE``. Each web worker imports what its first requests would need before it serves
anything (config.warmup).
"""

import os

from django.core.wsgi import get_wsgi_application

from config.handlers import HooksHandler, is_hook_path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class Application:
    """Sends a webhook request to the hooks' handler, any other to the site's."""

    def __init__(self) -> None:
        self.site = get_wsgi_application()
        self.hooks = HooksHandler()

    def __call__(self, environ, start_response):
        handler = self.hooks if is_hook_path(environ.get("PATH_INFO", "")) else self.site
        return handler(environ, start_response)


application = Application()

from config import warmup  # noqa: E402 - needs Django set up (above)

warmup.web()
