"""The ``orchestrix_*`` management commands."""
