"""Numbers read from a spec's YAML keep the text they were written as.

A run id such as ``5e8841302917`` or ``123456789012`` written bare in YAML is a number to the
parser (a float, an int), and its digits are lost once it is one (``inf``). The spec loader
builds its numbers as ``TextInt`` / ``TextFloat``, which are ints and floats everywhere but
remember their source text, so a field that wants a string (``RunIdText``) takes the text
back. A number that did not come from the YAML (say, from JSON) gets a one-line "quote it".
"""

from __future__ import annotations

from typing import Annotated, Any

import yaml
from pydantic import BeforeValidator

from contract.specs.yaml_text import SpecLoader


class TextInt(int):
    """An int that remembers how it was written."""

    text: str


class TextFloat(float):
    """A float that remembers how it was written."""

    text: str


def _with_text(kind: type[TextInt] | type[TextFloat], tag: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
        value = yaml.SafeLoader.yaml_constructors[tag](loader, node)
        kept = kind(value)
        kept.text = node.value
        return kept

    return construct


SpecLoader.add_constructor("tag:yaml.org,2002:int", _with_text(TextInt, "tag:yaml.org,2002:int"))
SpecLoader.add_constructor("tag:yaml.org,2002:float",
                           _with_text(TextFloat, "tag:yaml.org,2002:float"))


def _as_text(value: Any) -> Any:
    """A YAML number's source text for a string field; a bare number of unknown text refused."""
    if isinstance(value, TextInt | TextFloat):
        return value.text
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"must be a string: quote it ('{value}')")
    return value


RunIdText = Annotated[str, BeforeValidator(_as_text)]
"""A run id: a string, also when YAML read its digits as a number (its text is kept)."""
