"""Built-in steps (`uses:`): one module per step, each behind the `Step` Protocol."""
