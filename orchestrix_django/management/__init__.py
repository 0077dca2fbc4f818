"""Orchestrix's management commands (``orchestrix_*``) and what they share."""
