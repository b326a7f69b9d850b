"""The public status site under /status/ (the page, its JSON API, feeds and badges)."""

from django.urls import path, re_path

from .public import subscribe, views

app_name = "status"

urlpatterns = [
    path("status/", views.public_file, name="index"),
    # The subscription pages (dynamic), before the catch-all of the rendered files.
    path("status/subscribe/", subscribe.subscribe, name="subscribe"),
    path(
        "status/subscriptions/confirm/<str:token>/",
        subscribe.confirm,
        name="subscription-confirm",
    ),
    path(
        "status/subscriptions/manage/<str:token>/",
        subscribe.manage,
        name="subscription-manage",
    ),
    path(
        "status/subscriptions/unsubscribe/<str:token>/",
        subscribe.unsubscribe,
        name="subscription-unsubscribe",
    ),
    path(
        "status/subscriptions/contact-optout/<str:token>/",
        subscribe.contact_optout,
        name="subscription-contact-optout",
    ),
    re_path(r"^status/(?P<path>[A-Za-z0-9_./-]+)$", views.public_file, name="file"),
]
