"""The web app: JSON API under /api, HTML pages, read-only share links under /s/{token}.

Never imports torch, core.ml or worker (tests/test_layering.py checks it)."""
