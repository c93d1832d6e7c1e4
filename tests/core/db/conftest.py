"""Fixtures for the records layer: ``db_url``, ``engine`` and ``postgres_database`` come from tests/conftest.py."""
