"""HTTP hosts of the service layer, beside the CLI: one module per API."""
