"""Where Orchestrix keeps its data: events, snapshots, checkpoints, saga state, dead letters."""
