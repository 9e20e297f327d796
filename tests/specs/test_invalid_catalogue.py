"""Every file in ``tests/specs/invalid/`` fails to load with a one-line problem at a known place.

Each file starts with ``# expect: PATH LINE`` (``-`` for "no path" or "no line"); an optional
second line ``# says: TEXT`` gives words the message must contain. The CLI tests reuse the
catalogue for the exit code 2 of ``robustlab validate`` and ``robustlab run``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contract.specs.loading import Problem, SpecError, load_spec_file

INVALID = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))


def header(spec: Path) -> tuple[str, str, str | None]:
    """(path, line, says) from the file's first two comment lines."""
    lines = spec.read_text().splitlines() + ["", ""]
    expect = re.fullmatch(r"# expect: (\S+) (\S+)", lines[0])
    assert expect, f"{spec.name} lacks its '# expect: PATH LINE' header"
    says = re.fullmatch(r"# says: (.+)", lines[1])
    return expect.group(1), expect.group(2), says.group(1) if says else None


def test_the_catalogue_covers_the_required_cases() -> None:
    assert len(INVALID) >= 12
    names = {spec.stem for spec in INVALID}
    for required in ("yaml_syntax_error", "not_a_mapping", "empty", "unknown_top_level_key",
                     "unknown_nested_key", "typo_with_suggestion", "missing_name", "unknown_kind",
                     "p_out_of_range", "negative_eps", "division_by_zero", "not_a_number",
                     "wrong_type", "sweep_unknown_field", "sweep_bad_value", "sweep_empty_list",
                     "evaluate_two_sources"):
        assert required in names


@pytest.mark.parametrize("spec", INVALID, ids=[spec.stem for spec in INVALID])
def test_invalid_spec_names_the_path_and_line(spec: Path) -> None:
    path, line, says = header(spec)
    with pytest.raises(SpecError) as raised:
        load_spec_file(spec)
    problems: list[Problem] = raised.value.problems
    text = str(raised.value)

    expected_path = "" if path == "-" else path
    expected_line = None if line == "-" else int(line)
    matching = [p for p in problems if p.path == expected_path and p.line == expected_line]
    assert matching, f"no problem at {path} line {line} in:\n{text}"
    assert all(p.file == str(spec) for p in problems)
    if expected_line is not None:
        assert f"{spec}:{line}" in text
    if says is not None:
        assert any(says in p.message for p in matching), text

    assert "Traceback" not in text and 'File "' not in text
    assert text.count("\n") == len(problems) - 1, "one line per problem"
    assert "Value error" not in text and "Input should be" not in text
