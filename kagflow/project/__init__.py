"""The project folder: kagflow.toml as typed config, its paths, its state, `kagflow init`."""
