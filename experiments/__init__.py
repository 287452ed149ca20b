"""The papers' experiments, one TOML file per table or figure (the format: tinyprop.tasks.experiments)."""
