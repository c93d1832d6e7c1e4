"""JSON API routes: each page's JSON twin and every state change, under /api."""
