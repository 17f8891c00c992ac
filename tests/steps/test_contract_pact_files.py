"""A pact file is checked for what contracts rely on before it is recorded: a consumer, a
provider, described interactions; what is missing is named with the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.spec.contracts import Contracts
from conveyor.steps.contract import PactFileError, read_pact


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b"[]", "a pact is a JSON object"),
        (b'{"provider": {"name": "p"}, "interactions": [{}]}', "key `consumer.name` missing"),
        (b'{"consumer": {"name": "c"}, "provider": {"name": "p"}}', "key `interactions`"),
        (
            b'{"consumer": {"name": "c"}, "provider": {"name": "p"}, "interactions": [{}]}',
            "key `interactions[0].description` missing",
        ),
    ],
    ids=["not-an-object", "no-consumer", "no-interactions", "no-description"],
)
def test_a_pact_missing_what_contracts_rely_on_is_refused(content: bytes, named: str) -> None:
    with pytest.raises(PactFileError, match=r"c-p\.json") as refused:
        read_pact(Path("c-p.json"), content)
    assert named in refused.value.message


def test_a_service_without_contracts_is_not_gated() -> None:
    assert not Contracts().declared


def test_the_verifiers_failed_interactions_are_named_with_their_mismatches() -> None:
    from conveyor.steps.contract_verify import failed_interactions

    results = {
        "interactionResults": [
            {"description": "a refund", "result": "OK"},
            {
                "description": "a payment for an order",
                "result": "Error",
                "mismatch": {
                    "mismatches": [
                        {"mismatch": "Actual map is missing the following keys: status"}
                    ],
                    "type": "mismatches",
                },
            },
            {
                "description": "a receipt",
                "result": "Error",
                "mismatch": {"message": "error sending request", "type": "error"},
            },
        ]
    }
    named = [(f.interaction, f.mismatch) for f in failed_interactions(results)]
    assert named == [
        ("a payment for an order", "Actual map is missing the following keys: status"),
        ("a receipt", "error sending request"),
    ]
