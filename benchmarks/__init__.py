"""The Orchestrix benchmark suite: ``python -m benchmarks --db postgresql``.

Every workload measures Orchestrix and its baselines (raw SQL on the same
table shape, the ``eventsourcing`` and ``eventsourcing-django`` packages) in
one run on one database server, and reports ratios against them. See
``docs/performance.md``.
"""
