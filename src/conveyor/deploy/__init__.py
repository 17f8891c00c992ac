"""Delivery's data plane: runtimes that run releases and routers that split traffic
between them (the controller that reconciles environments comes next)."""
