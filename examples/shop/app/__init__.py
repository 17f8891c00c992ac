"""Conveyor Shop: the sample service Conveyor's demo carries from commit to production."""
