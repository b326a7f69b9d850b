from django.contrib.admin.apps import AdminConfig


class VigilAdminConfig(AdminConfig):
    default_site = "config.admin.VigilAdminSite"
