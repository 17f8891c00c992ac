"""The service layer: what the CLI (and later the HTTP server) calls. No printing here."""
