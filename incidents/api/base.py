"""The base of every Vigil API view: JSON in, role-based read permission, per-token throttle."""

from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.parsers import JSONParser
from rest_framework.views import APIView

from .permissions import CanViewModel


class VigilAPIView(APIView):
    """Subclasses name ``permission_model``, the model whose view permission reading needs."""

    permission_classes = [CanViewModel]
    # JSON only: one body format to document, validate and fuzz (anything else is a 415).
    parser_classes = [JSONParser]
    filter_backends = [DjangoFilterBackend]
