"""The banking read models in the admin, read-only (the events are the truth)."""

from __future__ import annotations

from django.contrib import admin

from example_project.banking.models import AccountSummary, LedgerEntry, TransferSummary
from example_project.common.admin import ReadModelAdmin, saga_link, stream_link


@admin.register(AccountSummary)
class AccountSummaryAdmin(ReadModelAdmin):
    """Accounts: balance, status, activity."""

    list_display = [
        "account_id",
        "owner",
        "currency",
        "balance",
        "status",
        "deposits",
        "withdrawals",
        "version",
        "updated_at",
        "stream",
    ]
    list_filter = ["status", "currency"]
    search_fields = ["account_id", "owner"]

    @admin.display(description="stream")
    def stream(self, obj: AccountSummary) -> str:
        """The account's events."""
        return stream_link(obj.account_id)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadModelAdmin):
    """Every movement of money."""

    list_display = ["account", "kind", "amount", "balance_after", "reference", "timestamp"]
    list_filter = ["kind"]
    search_fields = ["account__account_id", "reference", "event_id"]
    list_select_related = ["account"]


@admin.register(TransferSummary)
class TransferSummaryAdmin(ReadModelAdmin):
    """Transfers and how they ended."""

    list_display = [
        "transfer_id",
        "source_id",
        "target_id",
        "amount",
        "currency",
        "status",
        "reason",
        "requested_at",
        "saga",
    ]
    list_filter = ["status", "currency"]
    search_fields = ["transfer_id", "source_id", "target_id"]

    @admin.display(description="saga")
    def saga(self, obj: TransferSummary) -> str:
        """The transfer's saga (its id is the transfer's)."""
        return saga_link(obj.transfer_id)
