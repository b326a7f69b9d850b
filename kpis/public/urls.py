"""The customer satisfaction survey's public pages under /survey/."""

from django.urls import path

from . import views

app_name = "survey"

urlpatterns = [
    path("<str:token>/rate/<str:rating>/", views.rate, name="rate"),
    path("<str:token>/comment/", views.comment, name="comment"),
]
