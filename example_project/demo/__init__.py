"""The demo: ``manage.py orchestrix_demo`` and the workload it generates."""
