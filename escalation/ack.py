"""One-click acknowledge links carried by notifications (built with the timers)."""

from django.http import HttpResponse


def acknowledge_link(request, token: str):  # noqa: ANN001, ANN201
    return HttpResponse("Acknowledge links are not available yet.", status=404)
