"""``specs/schema.json`` is current, and it accepts what the loader accepts (and refuses typos)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from contract.specs.kinds import SPEC_KINDS
from contract.specs.schema import SCHEMA_PATH, build_schema, render_schema, write_schema
from contract.specs.values import parse_number

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "specs").rglob("*.yaml"))

TRAIN = {
    "name": "cifar", "kind": "train", "dataset": {"name": "cifar10"},
    "model": {"arch": "cifar_resnet"}, "adversary": {"norm": "linf", "eps": "8/255"},
    "training": {"optimizer": {"lr": "1e-3"}},
}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = build_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_file_is_current() -> None:
    current = SCHEMA_PATH.read_text() if SCHEMA_PATH.exists() else ""
    assert current == render_schema(), \
        f"{SCHEMA_PATH} is stale: regenerate it with `robustlab schema --write`"


def test_write_schema_writes_the_rendered_schema(tmp_path: Path) -> None:
    path = write_schema(tmp_path / "nested" / "schema.json")
    assert json.loads(path.read_text()) == build_schema()


def test_schema_is_draft_2020_12_discriminated_on_kind() -> None:
    schema = build_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"]
    assert set(schema["discriminator"]["mapping"]) == set(SPEC_KINDS)


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_shipped_specs_validate_against_the_schema(
    path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    validator.validate(yaml.safe_load(path.read_text()))


def test_fractions_and_e_notation_are_valid_numbers(
    validator: jsonschema.Draft202012Validator,
) -> None:
    validator.validate(TRAIN)


@pytest.mark.parametrize(("change", "where"), [
    ({"adversary": {"eps": -0.1}}, "eps"),
    ({"adversary": {"eps": "abc"}}, "eps"),
    ({"adversary": {"epsilon": 0.1}}, "epsilon"),
    ({"kind": "trian"}, "kind"),
    ({"training": {"epochs": 0}}, "epochs"),
])
def test_the_schema_refuses_what_the_loader_refuses(
    change: dict, where: str, validator: jsonschema.Draft202012Validator
) -> None:
    errors = list(validator.iter_errors({**TRAIN, **change}))
    assert errors
    assert any(where in json.dumps(list(e.absolute_path)) + e.message
               for error in errors for e in [error, *(error.context or [])])


@pytest.mark.parametrize("text", ["8/255", "1e-3", " 0.5 ", "-1.5e+2/3", "3", ".5"])
def test_number_text_the_schema_accepts_is_text_parse_number_reads(
    text: str, validator: jsonschema.Draft202012Validator
) -> None:
    validator.validate({**TRAIN, "adversary": {"eps": text}})
    assert isinstance(parse_number(text), float)


@pytest.mark.parametrize("text", ["abc", "8/", "1e", "os.system('ls')", "8 / 255 / 2", ""])
def test_number_text_parse_number_refuses_the_schema_refuses(
    text: str, validator: jsonschema.Draft202012Validator
) -> None:
    assert not validator.is_valid({**TRAIN, "adversary": {"eps": text}})
    with pytest.raises(ValueError):
        parse_number(text)
