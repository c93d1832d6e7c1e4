"""Login, CSRF, body limits and response headers, installed on the app by ``install(app, settings)``.

(Owned by the share/security work of the dashboard issue; until it lands this installs nothing.)
"""

from __future__ import annotations

from fastapi import FastAPI

from core.settings import Settings


def install(app: FastAPI, settings: Settings) -> None:
    """Add the middleware that guards every route."""
