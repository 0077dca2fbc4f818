"""The optional REST API (Django REST framework), for integrators and operators' scripts.

``path("orchestrix/", include("orchestrix_django.api.urls"))`` serves the
event log, streams, projections, sagas and dead letters, the admin's
operations, and the OpenAPI schema. Only this package imports DRF. The
endpoints, media types, paging and access rules are in docs/api.md.

One module a resource: :mod:`.events` (the root, the log, events, streams),
:mod:`.projections`, :mod:`.sagas`, :mod:`.dead_letters`; :mod:`.base`
holds what they share.
"""
