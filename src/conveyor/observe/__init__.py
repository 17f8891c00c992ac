"""Observe: what production teaches after a release goes out.

Continuous watch of every environment's golden signals (`watch`), SLOs with
multiwindow, multi-burn-rate alerts (`slo`, `burn`, `rules`, `openslo`), one alert intake
for Conveyor's own evaluator and Alertmanager (`alerts`), incidents (`incidents`), logs
per release (`replica_logs`), business metrics and user feedback per release and flag
variant (`business`, `feedback`), DORA metrics from the event log (`dora`), and insights
filed as requirements (`requirements`, `insights`, `commit_links`, `release_notes`).

It sits at the service layer: it may use `service` (rollback, environments) and
everything below; the CLI and the server are its hosts.
"""
