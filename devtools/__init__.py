"""Developer tools for insights-mover: never imported by the engine (``shared/``)."""
