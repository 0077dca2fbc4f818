"""What the example's apps share: command building and dispatch, validation, API and admin bases."""
