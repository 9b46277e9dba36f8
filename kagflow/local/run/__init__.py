"""How a local kernel runs: the runner, its executor, the bubblewrap sandbox, mounts, limits, image."""
