"""URLs of the test project: the admin and the Orchestrix API."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("orchestrix/", include("orchestrix_django.api.urls")),
]
