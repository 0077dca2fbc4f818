"""The benchmark suite's Django app: its event classes, aggregate, read model and projections."""
