"""The senders beyond Alertmanager, Grafana, PagerDuty and the generic hook (§7.3): one module
per sender, each with its parser (the sender's payload read into :class:`IncomingAlert`) and
its copy-paste configuration snippet, registered here by kind.

A parser takes the decoded JSON body and returns a :class:`ParsedDelivery`, or raises
:class:`PayloadError` with the reasons (answered as a 400 before anything is stored). It does
no I/O: it runs in the request and again in the task that processes the stored body.

A parser may instead raise :class:`SenderTest` for a sender's test or ping message: the
request is answered as that sender expects, and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..parsing import ParsedDelivery


class SenderTest(Exception):
    """The body is the sender's test or ping message: answer ``status`` with ``body``."""

    def __init__(self, detail: str, *, status: int = 200, body: dict[str, Any] | None = None):
        super().__init__(detail)
        self.status = status
        self.body = body if body is not None else {"status": "ok", "detail": detail}


Parser = Callable[[Any], ParsedDelivery]
Snippet = Callable[[Any, dict[str, str]], str]  # (integration, its URLs) -> text

PARSERS: dict[str, Parser] = {}
SNIPPETS: dict[str, Snippet] = {}


def register(kind: str, *, parser: Parser | None = None, snippet: Snippet | None = None) -> None:
    if parser is not None:
        PARSERS[kind] = parser
    if snippet is not None:
        SNIPPETS[kind] = snippet


def load() -> None:
    """Import every sender module (each registers itself on import)."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
