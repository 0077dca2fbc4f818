"""Who may use the API: the admin's rules by default, the ``ORCHESTRIX`` settings decide.

``API_PERMISSION_CLASSES`` defaults to :class:`OrchestrixModelPermissions`:
the API grants exactly what the Django admin grants. A user must be active
and staff (as the admin requires); reading an endpoint takes the *view*
permission (or *change*, as in the admin) of the model behind it, and each
operation takes the permission of the admin's button that does the same
(*change*). Superusers have every permission. Each view declares what it
needs in :attr:`OrchestrixAccess.model_permissions`.

``API_AUTHENTICATION_CLASSES`` defaults to the session (the admin's login;
unsafe requests then need the CSRF token) and HTTP Basic for scripts. Both
are read on each request, never at import time, and deliberately not taken
from the project's ``REST_FRAMEWORK`` defaults: loosening those for the
project's own API must not open this one.
"""

from __future__ import annotations

import base64
import binascii
import enum
from typing import Any, ClassVar

from django.contrib.auth import get_permission_codename
from django.db.models import Model
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from orchestrix_django.settings import orchestrix_settings

__all__ = [
    "Access",
    "OrchestrixAccess",
    "OrchestrixModelPermissions",
    "api_authenticators",
    "api_permissions",
    "may",
]


class Access(enum.Enum):
    """What a view does with a model's rows: read them, or operate on them."""

    #: Read: the admin's *view* permission (its *change* permission also reads, as in the admin).
    VIEW = "view"
    #: Operate (rebuild, pause, retry, discard, …): the admin's *change* permission.
    CHANGE = "change"


def may(user: Any, model: type[Model], access: Access) -> bool:
    """Whether ``user`` holds the admin permission ``access`` on ``model``.

    As ``ModelAdmin.has_view_permission`` does, the *change* permission
    also lets a user read.
    """
    opts = model._meta
    actions = ("view", "change") if access is Access.VIEW else ("change",)
    return any(
        user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")
        for action in actions
    )


class OrchestrixModelPermissions(BasePermission):
    """The Django admin's permissions, for the views of this API (the default).

    Grants a request when its user is active and staff and holds every
    permission the view declares in ``model_permissions`` (pairs of a model
    and an :class:`Access`). A view that needs nothing beyond staff (the
    root, the schema) declares an empty tuple; one that declares nothing is
    refused to everybody, superusers included.
    """

    message = "You do not have the Django permission this endpoint needs (see the API's docs)."

    def has_permission(self, request: Request, view: Any) -> bool:
        """Active staff holding each declared model permission."""
        user = request.user
        if not (user and user.is_active and getattr(user, "is_staff", False)):
            return False
        needed: tuple[tuple[type[Model], Access], ...] | None = getattr(
            view, "model_permissions", None
        )
        if needed is None:
            return False
        return all(may(user, model, access) for model, access in needed)


def api_permissions() -> list[BasePermission]:
    """Instances of ``ORCHESTRIX["API_PERMISSION_CLASSES"]``."""
    return [permission() for permission in orchestrix_settings.API_PERMISSION_CLASSES]


def api_authenticators() -> list[BaseAuthentication]:
    """Instances of ``ORCHESTRIX["API_AUTHENTICATION_CLASSES"]``."""
    return [authenticator() for authenticator in orchestrix_settings.API_AUTHENTICATION_CLASSES]


class OrchestrixAccess(APIView):
    """A mixin for DRF views: the API's permissions and authentication, from the settings."""

    #: The admin permissions a request needs, as (model, access) pairs, read by
    #: :class:`OrchestrixModelPermissions`: empty for any active staff user,
    #: None (undeclared) for nobody, so that a view cannot be forgotten open.
    model_permissions: ClassVar[tuple[tuple[type[Model], Access], ...] | None] = None

    def get_permissions(self) -> list[Any]:
        """The configured permission instances (all must grant access)."""
        return api_permissions()

    def get_authenticators(self) -> list[Any]:
        """The configured authenticators (the first that recognises the request wins)."""
        return api_authenticators()

    def perform_authentication(self, request: Request) -> None:
        """Refuse HTTP Basic credentials holding a NUL, then authenticate as configured.

        No user name or password holds a NUL, and PostgreSQL raises on one in
        the user lookup.
        """
        scheme, _, encoded = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() == "basic" and "\x00" in encoded + _decoded(encoded):
            raise AuthenticationFailed(
                "Invalid basic header. Credentials must not contain NUL characters."
            )
        super().perform_authentication(request)


def _decoded(encoded: str) -> str:
    """The text of base64 ``encoded`` ("" if it is not base64: the authenticators say so)."""
    try:
        return base64.b64decode(encoded.strip()).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return ""
