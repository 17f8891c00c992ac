"""The pipeline spec: `conveyor.yml`, its typed model, loading with located errors."""
