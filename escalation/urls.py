"""Escalation routes: /healthz, acknowledge links, escalation API lists."""

urlpatterns: list = []
