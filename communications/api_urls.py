"""Staff API of public communication, under /api/v1/ (token or session, role permissions)."""

from django.urls import path  # noqa: F401

app_name = "communications-api"

urlpatterns: list = []
