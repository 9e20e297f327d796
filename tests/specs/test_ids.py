"""Ids that paste: generated ids read back from YAML as themselves; pasted numbers keep text."""

from __future__ import annotations

import pytest
import yaml

from contract.ids import new_id, reads_as_string
from contract.specs.loading import SpecError, load_spec_text
from contract.specs.yaml_text import SpecLoader
from service.recording import new_run_id

NUMERIC_LOOKING = ["5e8841302917", "123456789012", "0e1234567890", "000000000001", "1e10"]


@pytest.mark.parametrize("text", NUMERIC_LOOKING)
def test_ids_that_yaml_reads_as_numbers_are_recognised(text: str) -> None:
    assert not reads_as_string(text)


def test_generated_ids_never_resolve_to_a_number_a_boolean_or_null() -> None:
    """About 1 raw draw in 140 reads as a number: 5,000 ids cover dozens of redraws."""
    for draw in (new_id, new_run_id):
        for _ in range(2_500):
            text = draw()
            assert len(text) == 12
            for loader in (yaml.SafeLoader, SpecLoader):
                assert yaml.load(text, Loader=loader) == text  # noqa: S506 - safe loaders


@pytest.mark.parametrize("run_id", NUMERIC_LOOKING)
def test_a_pasted_id_keeps_its_digits_in_a_spec_and_in_set(run_id: str) -> None:
    spec = load_spec_text(f"name: x\nkind: evaluate\nsource: {{run: {run_id}}}\n").spec
    assert spec.source.run == run_id
    overridden = load_spec_text("name: x\nkind: evaluate\nsource: {run: abc}\n",
                                overrides=[f"source={{run: {run_id}}}"]).spec
    assert overridden.source.run == run_id


def test_a_number_in_another_string_field_is_still_an_error() -> None:
    with pytest.raises(SpecError, match="name: must be a string"):
        load_spec_text("name: 12\nkind: theory\n")
