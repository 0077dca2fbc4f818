"""orchestrix_demo."""
