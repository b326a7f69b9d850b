"""The public status site's URLs: each serves one rendered file from the cache (see
:mod:`.site`). Anonymous, GET and HEAD only."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.views.decorators.http import require_http_methods

from .site import RETRY_SECONDS, SiteUnavailable, site_artifact

CORS_PREFIX = "api/"


@require_http_methods(["GET", "HEAD", "OPTIONS"])
def public_file(request: HttpRequest, path: str = "") -> HttpResponse:
    """``/status/`` -> ``index.html``; ``/status/x`` without an extension -> ``x.html``;
    anything else by its own name (``api/v2/summary.json``, ``history.atom``). ``/status/x/``
    redirects to ``/status/x``: the pages' links are relative (so the static export works on
    any host), and would not resolve one folder too deep."""
    if request.method == "OPTIONS":
        return _options(path)
    if path.endswith("/") and path.strip("/"):
        query = request.META.get("QUERY_STRING", "")
        target = request.path.rstrip("/") + ("?" + query if query else "")
        return HttpResponsePermanentRedirect(target)
    name = path.strip("/")
    if not name:
        name = "index.html"
    elif "." not in name.rsplit("/", 1)[-1]:
        name += ".html"
    if ".." in name.split("/"):
        raise Http404
    try:
        artifact = site_artifact(name)
    except SiteUnavailable:
        response = HttpResponse(
            "The status page is temporarily unavailable. Please try again shortly.\n",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
        response["Retry-After"] = str(RETRY_SECONDS)
        response["Cache-Control"] = "no-store"
        return response
    if artifact is None:
        raise Http404
    response = HttpResponse(artifact.body, content_type=artifact.content_type)
    response["Cache-Control"] = "public, max-age=30"
    if name.startswith(CORS_PREFIX):
        response["Access-Control-Allow-Origin"] = "*"
    return response


def _options(path: str) -> HttpResponse:
    """A CORS preflight (a browser asks before a cross-origin request with custom headers): the
    API's files may be read from any origin; nothing here can be written."""
    response = HttpResponse(status=204)
    response["Allow"] = "GET, HEAD, OPTIONS"
    if path.lstrip("/").startswith(CORS_PREFIX):
        response["Access-Control-Allow-Origin"] = "*"
        response["Access-Control-Allow-Methods"] = "GET, HEAD"
        response["Access-Control-Allow-Headers"] = "*"
        response["Access-Control-Max-Age"] = "86400"
    return response
