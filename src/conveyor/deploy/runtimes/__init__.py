"""Runtimes run a release's replicas; one module per backend behind `Runtime`."""
