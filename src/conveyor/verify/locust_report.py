"""A Locust plugin: the final statistics, as Locust computes them, written as JSON.

The `perf` step copies this file next to its scratch files and hands it to Locust beside
the user's locustfile (`-f locustfile.py,locust_report.py`). Conveyor never imports it:
importing locust monkey-patches the process with gevent.

Why not Locust's own outputs: the CSV stats are rewritten once a second, so the final
file can miss the last second of a run, and `--json-file` has neither percentiles nor the
failures' messages. Here every number comes from Locust's own StatsEntry, after the last
user stopped (the `quitting` event).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from locust import events
from locust.env import Environment
from locust.stats import StatsEntry, StatsError, sort_stats

REPORT_OPTION = "--conveyor-report"
FORMAT = 1


def _add_option(parser: Any, **_kwargs: Any) -> None:
    parser.add_argument(REPORT_OPTION, default="", help="Write Conveyor's stats JSON here.")


def _write_report(environment: Environment, **_kwargs: Any) -> None:
    options = environment.parsed_options
    path = getattr(options, "conveyor_report", "") if options is not None else ""
    if not path:
        return
    stats = environment.stats
    exceptions = environment.runner.exceptions.values() if environment.runner else []
    report = {
        "format": FORMAT,
        "endpoints": [_entry(entry) for entry in sort_stats(stats.entries)],
        "total": _entry(stats.total),
        "errors": [_error(error) for error in _most_frequent_first(stats.errors)],
        "exceptions": [{"count": row["count"], "message": row["msg"]} for row in exceptions],
    }
    # Written whole, then renamed: a crash mid-write leaves no half report behind.
    partial = Path(f"{path}.partial")
    partial.write_text(json.dumps(report, indent=1))
    os.replace(partial, path)


# EventHook.add_listener is untyped upstream.
events.init_command_line_parser.add_listener(_add_option)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_write_report)  # type: ignore[no-untyped-call]


def _entry(entry: StatsEntry) -> dict[str, Any]:
    return {
        "method": entry.method or "",
        "name": entry.name,
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "p50_ms": entry.get_response_time_percentile(0.50),
        "p95_ms": entry.get_response_time_percentile(0.95),
        "p99_ms": entry.get_response_time_percentile(0.99),
        "max_ms": entry.max_response_time,
        "avg_ms": entry.avg_response_time,
        "rps": entry.total_rps,
    }


def _most_frequent_first(errors: dict[str, StatsError]) -> list[StatsError]:
    return sorted(errors.values(), key=lambda error: (-error.occurrences, error.name))


def _error(error: StatsError) -> dict[str, Any]:
    return {
        "method": error.method or "",
        "name": error.name,
        "error": StatsError.parse_error(error.error),
        "occurrences": error.occurrences,
    }
