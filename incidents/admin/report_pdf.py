"""The §6.2 incident report as PDF: the report page's own HTML (the same template, with the
admin's print stylesheet, which hides the navigation) laid out by WeasyPrint.

WeasyPrint is imported when a PDF is asked for, so the core runs without it (and without the
system's Pango it needs): :class:`PdfUnavailable` says why a PDF cannot be made. While laying out
the page it may read Vigil's own static files (stylesheets) and ``data:`` URLs, nothing else:
no request leaves the server, whatever a report contains."""

from __future__ import annotations

import mimetypes
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.contrib.staticfiles import finders
from django.contrib.staticfiles.storage import staticfiles_storage


class PdfUnavailable(Exception):
    """WeasyPrint or the system libraries it needs (Pango) are not installed."""


def _static_file(url: str) -> tuple[bytes, str] | None:
    """The bytes and type of the static file ``url`` points to, or None."""
    path = unquote(urlsplit(url).path)
    prefix = urlsplit(settings.STATIC_URL).path
    if not path.startswith(prefix):
        return None
    name = path[len(prefix) :]
    if not name or ".." in name.split("/"):
        return None
    found = finders.find(name)
    if found:
        with open(found, "rb") as handle:
            data = handle.read()
    elif staticfiles_storage.exists(name):
        with staticfiles_storage.open(name) as handle:
            data = handle.read()
    else:
        return None
    return data, mimetypes.guess_type(name)[0] or "application/octet-stream"


def report_pdf(*, html: str, base_url: str) -> bytes:
    """The PDF of the report page ``html`` (``base_url``: the absolute address of the site, for
    the page's relative links). Raises :class:`PdfUnavailable` without WeasyPrint or Pango."""
    try:
        import weasyprint
        from weasyprint.urls import URLFetcher, URLFetcherResponse
    except (ImportError, OSError) as exc:
        raise PdfUnavailable(f"WeasyPrint cannot be loaded: {exc}") from exc

    class StaticOnlyFetcher(URLFetcher):
        def fetch(self, url, headers=None):
            if url.startswith("data:"):
                return super().fetch(url, headers)
            found = _static_file(url)
            if found is None:
                raise ValueError(f"Not fetched while making a PDF: {url}")
            data, mime_type = found
            return URLFetcherResponse(url, body=data, headers={"Content-Type": mime_type})

    document = weasyprint.HTML(string=html, base_url=base_url, url_fetcher=StaticOnlyFetcher())
    return document.write_pdf()
