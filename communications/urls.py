"""The public status site under /status/ (the page, its JSON API, feeds and badges)."""

from django.urls import path, re_path

from .public import views

app_name = "status"

urlpatterns = [
    path("status/", views.public_file, name="index"),
    re_path(r"^status/(?P<path>[A-Za-z0-9_./-]+)$", views.public_file, name="file"),
]
