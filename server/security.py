"""What guards every route, installed by ``install(app, settings)`` in three concerns, one module each:

- ``server.guard``: the middleware every request passes (body limit, login required, share links
  read-only, CSRF, no NUL in text, security headers; its docstring lists the rules in order);
- ``server.login``: the tokens and cookies it checks, and the /login and /logout routes;
- ``server.errors``: how failures are answered (404, 422 naming each field, 503 for a busy database).

Templates get the page's CSRF token from the Jinja globals ``csrf_token()`` and ``csrf_input()``.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import FastAPI
from jinja2 import pass_context
from markupsafe import Markup, escape

from core.settings import Settings
from server import errors
from server.guard import CSRF_FIELD, SEED_SCOPE_KEY, Guard
from server.login import csrf_for, login


def install(app: FastAPI, settings: Settings) -> None:
    """Guard every route, add /login and /logout, answer failures, and give templates their CSRF token."""
    secret = settings.secret_key.encode() if settings.secret_key else secrets.token_bytes(32)
    app.state.secret_key = secret
    app.include_router(login)
    app.add_middleware(Guard, settings=settings, secret=secret)
    errors.install(app)

    def csrf_token(context: Any) -> str:
        request = context.get("request")
        seed = request.scope.get(SEED_SCOPE_KEY) if request is not None else None
        return csrf_for(secret, seed) if seed else ""

    def csrf_input(context: Any) -> Markup:
        return Markup(f'<input type="hidden" name="{CSRF_FIELD}" value="{escape(csrf_token(context))}">')

    env = app.state.templates.env
    env.globals["csrf_token"] = pass_context(csrf_token)
    env.globals["csrf_input"] = pass_context(csrf_input)
