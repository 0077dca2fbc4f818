"""The project's upcaster registry (``ORCHESTRIX["UPCASTERS"]``): every app's upcasters.

Orchestrix upcasts each stored event older than its class's latest schema
version on every read path (aggregates, projections, the admin), and the
system checks refuse to start when a chain has a missing link.
"""

from __future__ import annotations

from example_project.banking.upcasters import MoneyDepositedV1ToV2
from orchestrix.core.eventsourcing.versioning import UpcasterRegistry

__all__ = ["upcasters"]

upcasters = UpcasterRegistry()
upcasters.register("MoneyDeposited", MoneyDepositedV1ToV2(source_version=1, target_version=2))
