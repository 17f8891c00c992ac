"""Routers split an environment's traffic between releases; one module per backend."""
