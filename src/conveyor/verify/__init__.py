"""Tests against a running environment: E2E journeys, performance under load, DAST.

`target` finds what a step tests (an environment's router URL and live release) and
refuses to test something that is not answering: a staging that is down fails the step
with the reason, never passes it.
"""
