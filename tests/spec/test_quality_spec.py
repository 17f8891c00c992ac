"""`gates.quality` in conveyor.yml: its defaults, and bad thresholds refused with the file,
line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import SpecError
from conveyor.spec.loader import load_pipeline, parse_pipeline
from conveyor.steps.registry import STEP_PARAMS

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop" / "conveyor.yml"


def _spec(quality: str) -> str:
    return f"version: 1\ngates:\n  quality:\n{quality}jobs:\n  quality: {{uses: quality}}\n"


def test_the_thresholds_have_defaults_and_are_read() -> None:
    default = parse_pipeline(_spec("    {}\n"), "conveyor.yml", steps=STEP_PARAMS)
    chosen = parse_pipeline(
        _spec("    max_complexity: 15\n    max_duplication_ratio: 2.5\n"),
        "conveyor.yml",
        steps=STEP_PARAMS,
    )

    quality = default.pipeline.gates.quality
    assert (quality.max_complexity, quality.min_duplicate_lines) == (10, 6)
    assert (quality.min_duplicate_tokens, quality.max_duplication_ratio) == (50, None)
    chosen_quality = chosen.pipeline.gates.quality
    assert (chosen_quality.max_complexity, chosen_quality.max_duplication_ratio) == (15, 2.5)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param(
            "    max_complexity: 0\n",
            "conveyor.yml:4:21: gates.quality.max_complexity: must be greater than or equal to 1",
            id="complexity-zero",
        ),
        pytest.param(
            "    max_complexity: ten\n",
            "conveyor.yml:4:21: gates.quality.max_complexity: expected a whole number",
            id="complexity-not-a-number",
        ),
        pytest.param(
            "    min_duplicate_lines: 2\n",
            "conveyor.yml:4:26: gates.quality.min_duplicate_lines: must be greater than or "
            "equal to 3",
            id="block-below-the-scan-floor",
        ),
        pytest.param(
            "    max_duplication_ratio: 140\n",
            "conveyor.yml:4:28: gates.quality.max_duplication_ratio: must be less than or "
            "equal to 100",
            id="ratio-over-100",
        ),
        pytest.param(
            "    max_complexty: 12\n",
            "conveyor.yml:4:5: gates.quality.max_complexty: unknown key 'max_complexty'",
            id="typo",
        ),
    ],
)
def test_a_bad_threshold_names_the_file_line_and_key(line: str, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_pipeline(_spec(line), "conveyor.yml", steps=STEP_PARAMS)

    assert str(raised.value).startswith(message)


def test_a_typo_gets_the_key_it_meant() -> None:
    with pytest.raises(SpecError) as raised:
        parse_pipeline(_spec("    max_complexty: 12\n"), "conveyor.yml", steps=STEP_PARAMS)

    assert raised.value.hint == "did you mean 'max_complexity'?"


def test_the_shops_image_waits_for_its_quality_gate() -> None:
    pipeline = load_pipeline(SHOP, steps=STEP_PARAMS).pipeline

    assert pipeline.jobs["quality"].uses == "quality"
    assert "quality" in pipeline.jobs["image"].needs
    assert pipeline.gates.quality.max_complexity == 10
