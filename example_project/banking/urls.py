"""URLs of the banking API (included under ``api/banking/``)."""

from django.urls import path

from example_project.banking import api

urlpatterns = [
    path("accounts/", api.OpenAccountView.as_view(), name="banking-open-account"),
    path("accounts/<str:account_id>/", api.AccountView.as_view(), name="banking-account"),
    path("accounts/<str:account_id>/deposit/", api.DepositView.as_view(), name="banking-deposit"),
    path(
        "accounts/<str:account_id>/withdraw/", api.WithdrawView.as_view(), name="banking-withdraw"
    ),
    path(
        "accounts/<str:account_id>/freeze/", api.FreezeAccountView.as_view(), name="banking-freeze"
    ),
    path("accounts/<str:account_id>/close/", api.CloseAccountView.as_view(), name="banking-close"),
    path("transfers/", api.TransferMoneyView.as_view(), name="banking-transfers"),
    path("transfers/<str:transfer_id>/", api.TransferView.as_view(), name="banking-transfer"),
]
