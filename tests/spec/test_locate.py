import pytest

from conveyor.errors import SpecError
from conveyor.spec.locate import format_key_path, parse_yaml

TEXT = """\
version: 1
jobs:
  build:
    run: [make, make test]
    retry:
      on: [timeout]
"""


def test_data_uses_yaml_scalar_types_but_keys_stay_text() -> None:
    document = parse_yaml("a: 1\nb: 1.5\nc: true\nd: ~\ne: '3'\non: 2024-01-01\n", "f.yml")
    assert document.data == {"a": 1, "b": 1.5, "c": True, "d": None, "e": "3", "on": "2024-01-01"}


def test_positions_of_keys_and_values_are_one_based() -> None:
    locator = parse_yaml(TEXT, "f.yml").locator
    assert locator.locate(()) == (1, 1)
    assert locator.locate_key(("jobs", "build")) == (3, 3)
    assert locator.locate(("jobs", "build")) == (4, 5)
    assert locator.locate(("jobs", "build", "run", 1)) == (4, 17)
    assert locator.locate_key(("jobs", "build", "retry", "on")) == (6, 7)
    assert locator.locate(("jobs", "build", "retry", "on", 0)) == (6, 12)


def test_unknown_path_falls_back_to_the_nearest_located_ancestor() -> None:
    locator = parse_yaml(TEXT, "f.yml").locator
    assert locator.locate(("jobs", "build", "run", 7, "x")) == (4, 10)
    assert locator.locate_key(("jobs", "build", "timeout")) == (4, 5)


def test_duplicate_job_name_names_the_first_definition() -> None:
    text = "version: 1\njobs:\n  a: {run: x}\n  b: {run: y}\n  a: {run: z}\n"
    with pytest.raises(SpecError) as caught:
        parse_yaml(text, "f.yml", key_nouns={("jobs",): "job name"})
    error = caught.value
    assert (error.line, error.column, error.key_path) == (5, 3, "jobs.a")
    assert error.detail == "duplicate job name 'a' (first defined at line 3)"


def test_duplicate_key_at_any_depth() -> None:
    with pytest.raises(SpecError) as caught:
        parse_yaml("jobs:\n  a:\n    run: x\n    env: {A: 1, A: 2}\n", "f.yml")
    error = caught.value
    assert (error.line, error.column, error.key_path) == (4, 17, "jobs.a.env.A")
    assert error.detail == "duplicate key 'A' (first defined at line 4)"


def test_aliases_and_merge_keys_are_supported() -> None:
    text = "base: &base {run: x, cache: false}\njob:\n  <<: *base\n  run: y\nother: *base\n"
    document = parse_yaml(text, "f.yml")
    assert document.data["job"] == {"run": "y", "cache": False}
    assert document.data["other"] == {"run": "x", "cache": False}
    # Keys that come from a merge are located at the mapping that merges them.
    assert document.locator.locate(("job", "cache")) == (3, 3)


def test_anchor_used_inside_itself_is_refused() -> None:
    with pytest.raises(SpecError, match="an anchor is used inside itself"):
        parse_yaml("a: &x [1, *x]\n", "f.yml")


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment", "hint"),
    [
        ("a: [1, 2\nb: 3\n", 2, 2, "did not find expected ',' or ']'", None),
        ("a:\n\tb: 1\n", 2, 1, "cannot start any token", "indent with spaces"),
        ("a: 1\n---\nb: 2\n", 2, 1, "but found another document", None),
        ("a: *nowhere\n", 1, 4, "found undefined alias", None),
        ("a: b\nc: \x07\n", 2, 4, "control characters are not allowed", None),
        ("a: !Ref x\n", 1, 4, "unsupported YAML tag '!Ref'", None),
        ("a: !!int twelve\n", 1, 4, "'twelve' is not a valid int", None),
        ("? [1]\n: 2\n", 1, 3, "a key must be a plain name", None),
    ],
)
def test_syntax_errors_are_located(
    text: str, line: int, column: int, fragment: str, hint: str | None
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_yaml(text, "f.yml")
    error = caught.value
    assert (error.line, error.column) == (line, column)
    assert fragment in error.detail
    if hint is None:
        assert error.hint is None
    else:
        assert error.hint is not None and hint in error.hint


@pytest.mark.parametrize(("text", "fragment"), [("", "empty"), ("# only a comment\n", "empty")])
def test_empty_file_is_an_error(text: str, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment) as caught:
        parse_yaml(text, "f.yml")
    assert caught.value.hint is not None and "conveyor init" in caught.value.hint


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(SpecError, match="top level must be a mapping") as caught:
        parse_yaml("- a\n- b\n", "f.yml")
    assert (caught.value.line, caught.value.column) == (1, 1)


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), ""),
        (("jobs", "build", "needs", 1), "jobs.build.needs[1]"),
        (("jobs", "deploy.prod", "if"), 'jobs["deploy.prod"].if'),
        (("matrix", 0, 1), "matrix[0][1]"),
    ],
)
def test_format_key_path(path: tuple[str | int, ...], text: str) -> None:
    assert format_key_path(path) == text
