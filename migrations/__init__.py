"""Alembic migrations, shipped as package data (found by core.resources; env.py is Alembic's, not imported)."""
