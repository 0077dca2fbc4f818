"""Who may use the API: the classes named by the ``ORCHESTRIX`` settings.

``API_PERMISSION_CLASSES`` (default: ``IsAdminUser``, staff only) and
``API_AUTHENTICATION_CLASSES`` (default: the session, so the admin's login
works and unsafe requests need the CSRF token, and HTTP Basic for scripts).
They are read on each request, never at import time, and deliberately not
taken from the project's ``REST_FRAMEWORK`` defaults: loosening those for
the project's own API must not open this one.
"""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from orchestrix_django.conf import orchestrix_settings

__all__ = ["OrchestrixAccess", "api_authenticators", "api_permissions"]


def api_permissions() -> list[BasePermission]:
    """Instances of ``ORCHESTRIX["API_PERMISSION_CLASSES"]``."""
    return [permission() for permission in orchestrix_settings.API_PERMISSION_CLASSES]


def api_authenticators() -> list[BaseAuthentication]:
    """Instances of ``ORCHESTRIX["API_AUTHENTICATION_CLASSES"]``."""
    return [authenticator() for authenticator in orchestrix_settings.API_AUTHENTICATION_CLASSES]


class OrchestrixAccess:
    """A mixin for DRF views: the API's permissions and authentication, from the settings."""

    def get_permissions(self) -> list[Any]:
        """The configured permission instances (all must grant access)."""
        return api_permissions()

    def get_authenticators(self) -> list[Any]:
        """The configured authenticators (the first that recognises the request wins)."""
        return api_authenticators()
