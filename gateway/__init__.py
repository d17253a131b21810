"""PHI Gate: the FastAPI gateway (HTTP, database, auth, organisations, CLI)."""

__version__ = "0.1.0"
