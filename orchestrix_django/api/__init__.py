"""The optional REST API (Django REST framework), for integrators and operators' scripts.

Install the ``api`` extra (``pip install 'orchestrix[api]'``: DRF and
drf-spectacular) and include the URLs where you want them::

    urlpatterns = [..., path("orchestrix/", include("orchestrix_django.api.urls"))]

Only this package imports DRF: ``orchestrix_django`` works without it.

Endpoints (under the include; names in the ``orchestrix`` namespace):

==========================================  =====  ========================================
URL                                         verb   what
==========================================  =====  ========================================
(the root)                                  GET    links to everything below
``events/?after=<position>&limit=<n>``      GET    the global log, in position order
``events/<event_id>/``                      GET    one event
``streams/?aggregate_type=&after=&limit=``  GET    streams by id
``streams/<stream_id>/``                    GET    one stream's summary
``streams/<stream_id>/events/?after=<v>``   GET    a stream's events, in version order
``projections/``                            GET    every projection: position, lag, health
``projections/<id>/``                       GET    one projection
``projections/<id>/rebuild/``               POST   reset it, then catch up a bounded time
``projections/<id>/pause/``                 POST   stop the runners from advancing it
``projections/<id>/resume/``                POST   let the runners advance it again
``sagas/?status=&saga_type=&after=``        GET    sagas by id, with their step history
``sagas/<saga_id>/``                        GET    one saga
``dead-letters/?status=&source=&after=``    GET    dead letters by id
``dead-letters/<id>/``                      GET    one dead letter
``dead-letters/<id>/retry/``                POST   handle its message again
``dead-letters/<id>/discard/``              POST   give up on it (a projection skips it)
``schema/``                                 GET    the OpenAPI 3 schema (``?format=json``)
==========================================  =====  ========================================

**Events** are CloudEvents JSON, decoded and upcast to their current class
(see :mod:`orchestrix_django.storage.cloudevents`): one event is
``application/cloudevents+json``, a list ``application/cloudevents-batch+json``
(a JSON array); ``Accept: application/json`` gets the same bodies as plain
JSON. Each event carries its place as the extension attributes
``streamid``, ``streamversion`` and ``position``.

**Pages** follow a key, never an offset (:mod:`.pagination`):
``?after=<key>&limit=<n>``, ``limit`` defaulting to ``API_PAGE_SIZE`` and
capped at ``API_MAX_PAGE_SIZE``. The next page is in the ``Link`` header
(``rel="next"``) and, for object bodies, in ``"next"``; event lists are
arrays, so the header alone carries it.

**Access** (:mod:`.permissions`): the admin's permissions by default
(``API_PERMISSION_CLASSES``): active staff, the *view* permission of the
model behind an endpoint to read it, the *change* permission to operate;
by session (the admin's login; unsafe requests then need the CSRF token)
or HTTP Basic (``API_AUTHENTICATION_CLASSES``).
Anonymous requests get 403 (401 when an authentication class that asks for
credentials, such as Basic, comes first), other users 403.
"""
