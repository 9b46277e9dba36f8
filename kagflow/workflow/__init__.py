"""The verbs: one module per CLI group, bound on the Session (the facade the CLI calls)."""
