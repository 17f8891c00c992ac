"""The `conveyor` command line: one module per command group, thin over the service layer."""
