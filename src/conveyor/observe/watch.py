"""The continuous watch: every environment's golden signals sampled all the time (not
only during a release), within the retention limits, and handed to each consumer.

`CONSUMERS` lists, one line per part, "module:function" entries called after each
environment's sample as `function(project, store, environment, now)` (for instance the
SLO evaluator); a consumer that fails is recorded and does not stop the watch.
"""

from __future__ import annotations

CONSUMERS: tuple[str, ...] = (
    "conveyor.observe.business_watch:sample_on_watch",  # business counters per release
)
