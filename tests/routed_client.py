"""Django's test client routed as config.wsgi routes a request: a webhook (``HOOKS_PATHS``)
through ``HOOKS_MIDDLEWARE``, anything else through ``MIDDLEWARE``. The suite's ``client``
fixture is one, so the hooks' tests run the chain that serves them."""

from __future__ import annotations

from typing import Any

from django.test import Client
from django.test.client import ClientHandler

from config.handlers import HooksMiddleware, is_hook_path


class HooksClientHandler(HooksMiddleware, ClientHandler):
    pass


class RoutedHandler:
    def __init__(self, enforce_csrf_checks: bool = False) -> None:
        self.site = ClientHandler(enforce_csrf_checks)
        self.hooks = HooksClientHandler(enforce_csrf_checks)

    def __call__(self, environ: dict[str, Any]) -> Any:
        handler = self.hooks if is_hook_path(environ.get("PATH_INFO", "")) else self.site
        return handler(environ)


class RoutedClient(Client):
    def __init__(self, enforce_csrf_checks: bool = False, **defaults: Any) -> None:
        super().__init__(enforce_csrf_checks, **defaults)
        self.handler = RoutedHandler(enforce_csrf_checks)
