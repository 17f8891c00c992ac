"""Metrics providers: where the judge's counts come from (one module per source)."""
