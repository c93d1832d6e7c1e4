"""Jinja templates and static files, shipped as package data (found by core.resources)."""
