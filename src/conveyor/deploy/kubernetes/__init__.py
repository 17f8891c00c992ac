"""The `kubernetes` runtime: Argo Rollouts runs releases, Conveyor renders, applies and judges."""
