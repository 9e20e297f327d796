"""pydantic's validation errors as one human line each, on the line of the YAML at fault.

The tag of a discriminated union is dropped from the path, "Value error, " is stripped,
unknown fields get a did-you-mean, and the line is that of the offending key (of the parent
mapping for a missing field, line 1 at the top level). A problem caused by an override names
the ``--set`` it came from instead of a line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, get_args

import yaml
from pydantic import BaseModel
from pydantic_core import ErrorDetails

from contract.specs import sweep as sweeps
from contract.specs.kinds import SPEC_KINDS
from contract.specs.yaml_text import Problem, yaml_type

Loc = tuple[str | int, ...]
"""A path into the spec data: field names and list indices (a sweep key is one element)."""


@dataclass
class Located:
    """Turns a path into a ``Problem`` on the right line, or blames the ``--set`` that caused it."""

    file: str
    root: yaml.MappingNode
    overrides: list[tuple[str, Loc]] = field(default_factory=list)

    def problem(self, loc: Loc, message: str, *, shown_as: str | None = None) -> Problem:
        shown = shown_as if shown_as is not None else dotted(loc)
        for item, override in self.overrides:
            if self._caused_by(loc, override):
                return Problem(self.file, None, shown, f"{message} (from --set {item})")
        line, _ = self.find(loc)
        return Problem(self.file, line, shown, message)

    def _caused_by(self, loc: Loc, override: Loc) -> bool:
        """The override wrote this value, or the mapping this value lives in."""
        if overlap(loc, override):
            return True
        common = 0
        while common < min(len(loc), len(override)) and loc[common] == override[common]:
            common += 1
        return common > 0 and not self.find(loc[:common])[1]

    def find(self, loc: Loc) -> tuple[int, bool]:
        """The line of the deepest node on ``loc`` that the YAML has, and whether it has all.

        The line of a mapping entry is its key's line; of a list item, the item's first line.
        """
        line, node = 1, self.root
        for part in loc:
            child, child_line = _child_node(node, part)
            if child is None:
                return line, False
            line, node = child_line, child
        return line, True


def _child_node(node: yaml.Node, part: str | int) -> tuple[yaml.Node | None, int]:
    if isinstance(node, yaml.MappingNode):
        for key, value in reversed(node.value):  # the last of duplicate keys wins, as in PyYAML
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return value, key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part], node.value[part].start_mark.line + 1
    return None, 0


# --------------------------------------------------------------------------- messages


def describe(error: ErrorDetails, data: dict[str, Any]) -> tuple[Loc, str]:
    """The clean path (union tags dropped) and a one-line human message for a pydantic error."""
    loc, models = walk(error["loc"])
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return (*loc, "kind"), _kind_message(error["input"], loc, models)
    if error["type"] == "extra_forbidden":
        _, parents = walk(error["loc"][:-1])
        return loc, _unknown_field_message(str(loc[-1]), parents)
    if loc == ("sweep",) and isinstance(data.get("sweep"), dict):
        # The model checks the sweep as a whole; its message quotes the key at fault.
        loc = next((("sweep", key) for key in data["sweep"] if repr(key) in error["msg"]), loc)
    return loc, _message(error["type"], error["msg"], error.get("ctx", {}), error["input"])


def _kind_message(value: Any, loc: Loc, models: list[type[BaseModel]]) -> str:
    """A missing or unknown ``kind`` of a spec (``loc`` empty) or of a nested model (an attack)."""
    kinds = list(dict.fromkeys(k for m in models for k in _kinds(m))) if loc else list(SPEC_KINDS)
    expected = ", ".join(repr(k) for k in kinds)
    tag = value.get("kind") if isinstance(value, dict) else None
    if tag is None:
        return f"field required (one of {expected})"
    return f"unknown kind {tag!r}{_did_you_mean(str(tag), kinds)}; valid kinds: {expected}"


def _unknown_field_message(name: str, models: list[type[BaseModel]]) -> str:
    """Name the closest field, or list them all when none is close."""
    fields = sorted({field for model in models for field in model.model_fields})
    hint = _did_you_mean(name, fields) or (f" (fields: {', '.join(fields)})" if fields else "")
    return f"unknown field {name!r}{hint}"


_MESSAGES = {
    "missing": "field required",
    "greater_than_equal": "must be >= {ge} (got {got})",
    "greater_than": "must be > {gt} (got {got})",
    "less_than_equal": "must be <= {le} (got {got})",
    "less_than": "must be < {lt} (got {got})",
    "too_short": "must have at least {min_length} item(s)",
    "too_long": "must have at most {max_length} item(s)",
    "string_too_short": "must have at least {min_length} character(s)",
    "string_too_long": "must have at most {max_length} character(s)",
    "string_pattern_mismatch": "must match the pattern {pattern} (got {got})",
    "int_parsing": "must be an integer (got {got})",
    "int_type": "must be an integer (got {got})",
    "int_from_float": "must be a whole number (got {got})",
    "int_parsing_size": "must be a whole number <= 9223372036854775807 (got {got})",
    "float_parsing": "must be a number (got {got})",
    "float_type": "must be a number (got {got})",
    "bool_parsing": "must be true or false (got {got})",
    "bool_type": "must be true or false (got {got})",
    "string_type": "must be a string (got {got})",
    "list_type": "must be a list (got {got})",
    "dict_type": "must be a mapping (got {got})",
    "model_type": "must be a mapping (got {got})",
    "model_attributes_type": "must be a mapping (got {got})",
    "finite_number": "must be a finite number",
    "invalid_key": "field names must be strings",
}


def _message(kind: str, msg: str, ctx: dict[str, Any], value: Any) -> str:
    if kind == "value_error":
        message = msg.removeprefix("Value error, ")
        shown = _shown(value)
        if shown in message or isinstance(value, dict | list):
            return message
        return f"{message} (got {shown})"
    if kind == "literal_error":
        expected = re.sub(r" or (?='|\")", ", ", ctx["expected"])
        return f"must be one of {expected} (got {_shown(value)})"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind in _MESSAGES:
        return _MESSAGES[kind].format(got=_shown(value), **ctx)
    return msg.replace("Input should be", "must be")


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _shown(value: Any) -> str:
    """A short rendering of a bad input, as the user wrote it in YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return yaml_type(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def walk(loc: Iterable[str | int]) -> tuple[Loc, list[type[BaseModel]]]:
    """Drop the discriminated-union tags from a pydantic ``loc``; the models reached at its end.

    pydantic puts the chosen tag (``'train'``, ``'pgd'``) into the location of an error inside a
    discriminated union; a tag is recognised as a name that is the ``kind`` of one of several
    candidate models, where a field name is expected.
    """
    models: list[type[BaseModel]] = list(SPEC_KINDS.values())
    clean: list[str | int] = []
    tag_possible = True
    for part in loc:
        if tag_possible and len(models) > 1 and any(part in _kinds(m) for m in models):
            models = [m for m in models if part in _kinds(m)]
            tag_possible = False
            continue
        clean.append(part)
        if isinstance(part, str):
            models = [sub for m in models if part in m.model_fields
                      for sub in _models_in(m.model_fields[part].annotation)]
            tag_possible = True
    return tuple(clean), models


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation holds (through Optional, unions, lists and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _kinds(model: type[BaseModel]) -> tuple[str, ...]:
    """The ``kind`` literal(s) of a model, or () when it has no ``kind`` field."""
    kind = model.model_fields.get("kind")
    return tuple(str(arg) for arg in get_args(kind.annotation)) if kind is not None else ()


def loc_of(dotted: str) -> Loc:
    """A dotted path as a ``Loc``: digits become list indices, ``sweep.<key>`` two elements."""
    return tuple(int(p) if p.isdigit() else p for p in sweeps.split_path(dotted))


def overlap(a: Loc, b: Loc) -> bool:
    """One path equals the other or lies under it (the empty path, the whole spec, is neither)."""
    shorter = min(len(a), len(b))
    return shorter > 0 and a[:shorter] == b[:shorter]


def dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)
