from engine_fixtures import engine, hf_reference  # noqa: F401  (pytest fixtures)
