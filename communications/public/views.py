"""The public status site's URLs: each serves one rendered file from the cache (see
:mod:`.site`). Anonymous, GET and HEAD only."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.views.decorators.http import require_safe

from .site import RETRY_SECONDS, SiteUnavailable, site_artifact

CORS_PREFIX = "api/"


@require_safe
def public_file(request: HttpRequest, path: str = "") -> HttpResponse:
    """``/status/`` -> ``index.html``; ``/status/x`` without an extension -> ``x.html``;
    anything else by its own name (``api/v2/summary.json``, ``history.atom``). ``/status/x/``
    redirects to ``/status/x``: the pages' links are relative (so the static export works on
    any host), and would not resolve one folder too deep."""
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
