"""Run every benchmark of the core engine and print one summary (`make bench`).

.venv/bin/python bench/run_all.py --repeat 5
"""

from __future__ import annotations

import sys
import time

import delivery_under_load
import engine_vs_make
import lint_500
import warm_rerun
from common import Figure, console, header, print_figures, repeat_parser


def main(argv: list[str] | None = None) -> int:
    args = repeat_parser(__doc__ or "").parse_args(argv)
    started = time.perf_counter()
    figures: list[Figure] = []
    for benchmark in (engine_vs_make, warm_rerun, lint_500, delivery_under_load):
        figures += benchmark.measure(args.repeat)
        console.print()
    header(f"summary, {args.repeat} rounds each, {time.perf_counter() - started:.0f} s in all")
    print_figures("medians", figures)
    missed = [figure.name for figure in figures if figure.verdict == "MISSED"]
    console.print(f"goals missed: {', '.join(missed)}" if missed else "every goal met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
