"""URLs of the example project: the admin and the command APIs.

* ``/admin/``: Django's admin with Orchestrix's pages (streams, events,
  projections, sagas, dead letters) and the read models;
* ``/api/banking/`` and ``/api/orders/``: the command endpoints
  (:mod:`example_project.banking.api`, :mod:`example_project.orders.api`);
* ``/orchestrix/``: Orchestrix's own API (streams, the event log, projections,
  sagas, dead letters; by default the admin's users and permissions);
* ``/api-auth/``: DRF's sign-in page for the browsable API.
"""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/banking/", include("example_project.banking.urls")),
    path("api/orders/", include("example_project.orders.urls")),
    path("api-auth/", include("rest_framework.urls")),
    path("orchestrix/", include("orchestrix_django.api.urls")),
]
