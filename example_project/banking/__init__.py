"""The banking module: accounts, deposits, withdrawals and transfers between accounts."""
