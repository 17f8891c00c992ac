"""Conveyor: a self-hosted delivery platform, from commit to production."""

__version__ = "0.1.0"
