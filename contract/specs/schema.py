"""JSON Schema of the spec language, exported to ``specs/schema.json`` for editors.

Generated from ``contract.specs.kinds.AnySpec`` by pydantic, with two corrections: every number
field also accepts text such as ``8/255`` or ``1e-3`` (``parse_number`` reads it), so an editor
does not flag the paper's CIFAR-10 radius as an error; and bounds on such fields, which pydantic
writes as its own ``ge``/``gt``/``le``/``lt`` (not JSON Schema, so editors ignore them), become
``minimum``/``exclusiveMinimum``/``maximum``/``exclusiveMaximum`` on the number branch.

Regenerate with ``robustlab schema --write``; a test fails when the file is stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from contract.specs import values
from contract.specs.kinds import AnySpec
from contract.specs.values import parse_number

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "specs" / "schema.json"

_NUMBER_TEXT: JsonSchemaValue = {
    "type": "string",
    # The very expressions parse_number accepts, so the schema and the loader cannot disagree.
    "pattern": f"{values._NUMBER.pattern}|{values._FRACTION.pattern}",
    "description": "A number written as text: a fraction such as 8/255, or e-notation: 1e-3.",
}


class _SpecJsonSchema(GenerateJsonSchema):
    """pydantic's generator, widened where a field's before-validator is ``parse_number``."""

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        inner = super().function_before_schema(schema)
        if schema["function"]["function"] is parse_number:
            return {"anyOf": [inner, _NUMBER_TEXT]}
        return inner


_BOUNDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}


def _standard_bounds(node: Any) -> Any:
    """``node`` with pydantic's ``ge``/``gt``/``le``/``lt`` moved onto its numeric branches."""
    if isinstance(node, list):
        return [_standard_bounds(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _standard_bounds(value) for key, value in node.items()}
    bounds = {
        _BOUNDS[key]: node.pop(key)
        for key in list(node)
        if key in _BOUNDS and isinstance(node[key], int | float)  # not a property named 'ge'
    }
    if bounds:
        for branch in [node, *node.get("anyOf", [])]:
            if branch.get("type") in ("number", "integer"):
                branch.update(bounds)
    return node


def build_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a spec file, discriminated on ``kind``."""
    generated = TypeAdapter(AnySpec).json_schema(schema_generator=_SpecJsonSchema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "robustlab spec",
        "description": "An experiment spec (YAML): kind 'theory', 'train' or 'evaluate'.",
        **_standard_bounds(generated),
    }


def render_schema() -> str:
    """The text of ``specs/schema.json``: indented JSON ending in a newline."""
    return json.dumps(build_schema(), indent=2) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    """Write the schema to ``path`` and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_schema(), encoding="utf-8")
    return path
