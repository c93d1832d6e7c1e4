"""HTML page routes, rendered from frontend_templates/ with the same data as the JSON API."""
