"""/healthz: the watchdog an outside monitor polls (built with the outbox)."""

from django.http import JsonResponse


def healthz(request):  # noqa: ANN001, ANN201
    return JsonResponse({"status": "starting"}, status=503)
