"""Verify one pact file against a running provider with pact-python's verifier, in a
process of its own (the verifier is Pact's Rust core: it prints to the process's own
stdout and blocks), and write its results as JSON:

    python -m conveyor.steps.pact_verifier PROVIDER URL PACT_FILE TIMEOUT_MS RESULTS_JSON

The results are the core's own (`interactionResults`, each with its `description`,
`result` and `mismatch`); this module adds nothing but the file. Exit 0 when every
interaction passed, 1 when one failed, 2 when the verifier could not run.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

USAGE = "usage: python -m conveyor.steps.pact_verifier PROVIDER URL PACT TIMEOUT_MS RESULTS"


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(USAGE, file=sys.stderr)
        return 2
    provider, url, pact, timeout_ms, results = argv
    os.environ.setdefault("PACT_DO_NOT_TRACK", "true")
    try:
        from pact import Verifier
    except ImportError:
        print("pact-python is not installed: pip install 'conveyor[contracts]'", file=sys.stderr)
        return 2
    host = urlsplit(url).hostname or "127.0.0.1"
    verifier = (
        Verifier(provider, host=host)
        .add_transport(url=url)
        .add_source(pact)
        .set_request_timeout(int(timeout_ms))
        .set_coloured_output(enabled=False)
    )
    with contextlib.suppress(RuntimeError):  # failed interactions: the results say which
        verifier.verify()
    Path(results).write_text(json.dumps(verifier.results))
    return 0 if verifier.results.get("result") is True else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
